package kubenode

import (
	"fmt"
	"path/filepath"
)

// The node's fixed addresses. They exist only inside the node's own network
// namespace, so every node on the machine uses the same ones.
const (
	// NodeIP is the node's address: on the cni0 bridge the node creates in
	// its namespace, the pods' gateway, where the API server, the kubelet
	// and CoreDNS listen.
	NodeIP = "10.244.0.1"
	// PodCIDR holds the pods' addresses.
	PodCIDR = "10.244.0.0/24"
	// ServiceCIDR holds the Services' cluster IPs.
	ServiceCIDR = "10.96.0.0/16"
	// NodeName is the Kubernetes node's name.
	NodeName = "kubenode"
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain = "cluster.local"
	// APIPort is the API server's port inside the node.
	APIPort = 6443
	// StorageClass is the default StorageClass; the node's own local
	// provisioner serves it.
	StorageClass = "kubenode-local"
	// Provisioner names that provisioner.
	Provisioner = "kubenode.local/local-dir"

	apiServiceIP = "10.96.0.1"
	bridge       = "cni0"
)

// paths are the files and folders of one node under its state folder.
type paths struct {
	dir        string // the state folder
	etc, logs  string
	run        string // data of the components
	pki        string
	containerd string // containerd's socket folder
	pv         string // local persistent volumes
}

func newPaths(dir string) paths {
	return paths{
		dir:        dir,
		etc:        filepath.Join(dir, "etc"),
		logs:       filepath.Join(dir, "logs"),
		run:        filepath.Join(dir, "run"),
		pki:        filepath.Join(dir, "etc", "pki"),
		containerd: filepath.Join(dir, "run", "containerd"),
		pv:         filepath.Join(dir, "pv"),
	}
}

func (p paths) containerdSock() string { return filepath.Join(p.containerd, "containerd.sock") }
func (p paths) kubeconfig(c string) string {
	return filepath.Join(p.etc, c+".kubeconfig")
}

// containerdConfig is containerd 1.6's configuration (Debian bookworm's).
// Every folder is under the state folder or in the node's private /run;
// nothing on the host's file system is written.
func containerdConfig(p paths, sandboxImage string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (missing from some VMs' bounding set) runc cannot
  # set the negative oom_score_adj the kubelet asks for on sandboxes: clamp it
  # to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = %[6]q
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
`,
		filepath.Join(p.run, "containerd-root"),
		filepath.Join(p.run, "containerd-state"),
		p.containerdSock(),
		filepath.Join(p.run, "containerd-opt"),
		sandboxImage,
		hostTools.runc,
		filepath.Join(p.run, "runc"),
		cniBinDir,
		filepath.Join(p.etc, "cni"),
	)
}

// cniConfig: the bridge cni0 (created with the node's address before the
// kubelet starts), host-local addresses, portmap and loopback.
func cniConfig(p paths) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "kubenode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`, bridge, PodCIDR, NodeIP, filepath.Join(p.run, "cni-ipam"))
}

// kubeletConfig: cgroup v1 allowed (failCgroupV1), the cgroupfs driver
// (containerd 1.6 cannot tell the kubelet its driver), pods under the
// node's own cgroup, kernel defaults only checked (protectKernelDefaults:
// the node shows the kubelet the values it wants, so it writes none of the
// host's kernel settings), cluster DNS at the node address.
func kubeletConfig(p paths, cgroupRoot string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: %[2]s
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: true
containerRuntimeEndpoint: unix://%[3]s
podCIDR: %[4]s
clusterDNS: [%[1]s]
clusterDomain: %[5]s
resolvConf: %[6]s
podLogsDir: %[7]s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
maxPods: 110
`, NodeIP, cgroupRoot, p.containerdSock(), PodCIDR, ClusterDomain,
		filepath.Join(p.etc, "resolv.conf"), filepath.Join(p.run, "pod-logs"))
}

// kubeProxyConfig: nftables mode (its tables live in the node's network
// namespace), no conntrack settings written (they are the host's).
func kubeProxyConfig(p paths) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
hostnameOverride: %s
mode: nftables
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [%s/32]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, p.kubeconfig("proxy"), NodeName, PodCIDR, NodeIP)
}

// corefile: CoreDNS as a process of the node on the node address, serving
// the cluster domain from the API server; no forwarding (there is no
// upstream), so other names fail at once.
func corefile(p paths) string {
	return fmt.Sprintf(`.:53 {
    bind %s
    errors
    health 127.0.0.1:8081
    ready 127.0.0.1:8181
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s kubenode
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, NodeIP, ClusterDomain, p.kubeconfig("admin"))
}

// kernelDefaults are the kernel settings the kubelet insists on
// (setupKernelTunables). The node bind-mounts files holding these values
// over them in its mount namespace, so that the kubelet, checking only
// (protectKernelDefaults), finds what it wants and the host's settings stay
// as they are.
var kernelDefaults = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}
