// Package deploy_test checks the Kubernetes install in this folder: that
// kustomize renders it, that a real API server accepts every object, that
// its RBAC grants the prober what it needs and nothing more, and that the
// NATS configuration it ships quiesces through the included file.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/tools/kubetest"
)

// namespace is the one the kustomization sets.
const namespace = "nats"

// object is one rendered manifest: its identity and its raw YAML.
type object struct {
	Kind, Name, Namespace string
	raw                   []byte
}

func (o object) String() string { return o.Kind + "/" + o.Name }

// kubectl runs the kubeenv kubectl without an API server (kustomize).
func kubectl(tb testing.TB, args ...string) []byte {
	tb.Helper()
	bin, err := kubetest.BinDir()
	if err != nil {
		if os.Getenv(kubetest.EnvRequired) != "" || os.Getenv("CI") != "" {
			tb.Fatalf("no kubectl: %v", err)
		}
		tb.Skipf("no kubectl (set %s): %v", kubetest.EnvBin, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "kubectl"), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(tb, err, "kubectl %s: %s", strings.Join(args, " "), stderr.String())
	return out
}

// render runs `kubectl kustomize dir` and splits the result.
func render(tb testing.TB, dir string) ([]byte, []object) {
	tb.Helper()
	out := kubectl(tb, "kustomize", dir)
	var objs []object
	dec := utilyaml.NewDocumentDecoder(io.NopCloser(bytes.NewReader(out)))
	buf := make([]byte, 1<<20)
	for {
		n, err := dec.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(tb, err)
		doc := slices.Clone(buf[:n])
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		require.NoError(tb, yaml.Unmarshal(doc, &meta))
		if meta.Kind == "" {
			continue
		}
		objs = append(objs, object{Kind: meta.Kind, Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, raw: doc})
	}
	return out, objs
}

// find returns the object of kind whose name starts with prefix (generated
// ConfigMaps and Secrets carry a hash suffix).
func find(tb testing.TB, objs []object, kind, prefix string) object {
	tb.Helper()
	for _, o := range objs {
		if o.Kind == kind && (o.Name == prefix || strings.HasPrefix(o.Name, prefix+"-")) {
			return o
		}
	}
	require.FailNow(tb, "object not rendered", "%s %s", kind, prefix)
	return object{}
}

// TestKustomizeRenders renders the install and checks what the prober
// depends on in it.
func TestKustomizeRenders(t *testing.T) {
	_, objs := render(t, ".")
	var names []string
	for _, o := range objs {
		names = append(names, o.String())
		if o.Kind != "ClusterRole" && o.Kind != "ClusterRoleBinding" {
			assert.Equal(t, namespace, o.Namespace, o.String())
		}
	}
	for _, want := range []string{
		"ServiceAccount/prober", "Role/prober", "RoleBinding/prober", "Role/prober-operator", "Role/prober-viewer",
		"ClusterRole/prober-auth-delegator", "ClusterRoleBinding/prober-auth-delegator",
		"ConfigMap/prober-maintenance", "Service/nats-headless", "Service/nats", "Service/prober",
		"StatefulSet/nats", "NetworkPolicy/nats", "PodDisruptionBudget/nats",
	} {
		assert.Contains(t, names, want)
	}

	var sts appsv1.StatefulSet
	require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "StatefulSet", "nats").raw, &sts))
	spec := sts.Spec.Template.Spec
	assert.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy)
	assert.Equal(t, "nats-headless", sts.Spec.ServiceName)
	require.NotNil(t, spec.ShareProcessNamespace)
	assert.True(t, *spec.ShareProcessNamespace)
	assert.Equal(t, "prober", spec.ServiceAccountName)

	require.Len(t, spec.InitContainers, 1)
	sidecar := spec.InitContainers[0]
	require.NotNil(t, sidecar.RestartPolicy, "a native sidecar")
	assert.Equal(t, corev1.ContainerRestartPolicyAlways, *sidecar.RestartPolicy)
	assert.Equal(t, "ghcr.io/prober-dev/prober:latest", sidecar.Image)
	assert.Equal(t, "serve", sidecar.Args[0])
	require.NotNil(t, sidecar.SecurityContext)
	assert.Equal(t, []corev1.Capability{"NET_ADMIN"}, sidecar.SecurityContext.Capabilities.Add)
	assert.Equal(t, []corev1.Capability{"ALL"}, sidecar.SecurityContext.Capabilities.Drop)
	for probe, want := range map[*corev1.Probe]string{
		sidecar.ReadinessProbe: "/readyz", sidecar.LivenessProbe: "/livez", sidecar.StartupProbe: "/livez",
	} {
		require.NotNil(t, probe, want)
		require.NotNil(t, probe.HTTPGet, want)
		assert.Equal(t, want, probe.HTTPGet.Path)
		assert.Equal(t, "prober", probe.HTTPGet.Port.String())
	}
	env := map[string]string{}
	for _, e := range sidecar.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	assert.Equal(t, map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}, env)

	require.Len(t, spec.Containers, 1)
	natsC := spec.Containers[0]
	assert.True(t, strings.HasPrefix(natsC.Image, "nats:"), natsC.Image)
	// Readiness is the prober's, for the NATS container too: one restarted
	// in place is not ready until the prober finds it caught up.
	require.NotNil(t, natsC.ReadinessProbe)
	require.NotNil(t, natsC.ReadinessProbe.HTTPGet)
	assert.Equal(t, "/readyz", natsC.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "8889", natsC.ReadinessProbe.HTTPGet.Port.String())

	// The generated names are wired through.
	secret := find(t, objs, "Secret", "nats-credentials").Name
	config := find(t, objs, "ConfigMap", "nats-config").Name
	var secretRefs, configRefs int
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			assert.Equal(t, secret, v.Secret.SecretName)
			secretRefs++
			var paths []string
			for _, it := range v.Secret.Items {
				paths = append(paths, it.Path)
			}
			assert.ElementsMatch(t, []string{"SYS/user", "SYS/password", "APP/user", "APP/password"}, paths)
		}
		if v.ConfigMap != nil {
			assert.Equal(t, config, v.ConfigMap.Name)
			configRefs++
		}
	}
	assert.Equal(t, 1, secretRefs)
	assert.Equal(t, 1, configRefs)
	for _, e := range natsC.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			assert.Equal(t, secret, e.ValueFrom.SecretKeyRef.Name, e.Name)
		}
	}

	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "ClusterRoleBinding", "prober-auth-delegator").raw, &crb))
	require.Len(t, crb.Subjects, 1)
	assert.Equal(t, namespace, crb.Subjects[0].Namespace)

	var maint corev1.ConfigMap
	require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "ConfigMap", "prober-maintenance").raw, &maint))
	assert.Nil(t, maint.Data, "applying the install again must not wipe the state")

	for _, svc := range []struct {
		name        string
		notReadyToo bool
	}{{"nats-headless", true}, {"nats", false}, {"prober", true}} {
		var s corev1.Service
		require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "Service", svc.name).raw, &s))
		assert.Equal(t, svc.notReadyToo, s.Spec.PublishNotReadyAddresses, svc.name)
	}
}

// TestKustomizeOverlayNamespace renders an overlay into another namespace:
// the binding of the cluster-scoped role must follow.
func TestKustomizeOverlayNamespace(t *testing.T) {
	base, err := filepath.Abs(".")
	require.NoError(t, err)
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), fmt.Appendf(nil,
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: team-a\nnameSuffix: -team-a\nresources:\n- %s\n", rel), 0o600))
	_, objs := render(t, dir)
	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "ClusterRoleBinding", "prober-auth-delegator").raw, &crb))
	assert.Equal(t, "prober-auth-delegator-team-a", crb.Name)
	require.Len(t, crb.Subjects, 1)
	assert.Equal(t, "team-a", crb.Subjects[0].Namespace)
	assert.Equal(t, "prober-team-a", crb.Subjects[0].Name)
	var sts appsv1.StatefulSet
	require.NoError(t, yaml.UnmarshalStrict(find(t, objs, "StatefulSet", "nats").raw, &sts))
	assert.Equal(t, "prober-team-a", sts.Spec.Template.Spec.ServiceAccountName)
}

// TestApplyServerDryRun sends the rendered install to a real API server
// with --dry-run=server: admission and validation run, nothing is stored.
func TestApplyServerDryRun(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	cs, err := env.Clientset()
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	require.NoError(t, err)

	rendered, objs := render(t, ".")
	file := filepath.Join(t.TempDir(), "install.yaml")
	require.NoError(t, os.WriteFile(file, rendered, 0o600))
	out, err := env.Kubectl(ctx, "apply", "--dry-run=server", "-f", file)
	require.NoError(t, err, "%s", out)
	t.Logf("kubectl apply --dry-run=server:\n%s", out)

	// Each line reads "<resource>[.<group>]/<name> created (server dry run)".
	accepted := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasSuffix(l, " created (server dry run)") {
			continue
		}
		ref, _, _ := strings.Cut(l, " ")
		res, name, _ := strings.Cut(ref, "/")
		res, _, _ = strings.Cut(res, ".")
		accepted[res+"/"+name] = true
	}
	assert.Len(t, accepted, len(objs), "one object accepted per object rendered")
	for _, o := range objs {
		assert.True(t, accepted[strings.ToLower(o.Kind)+"/"+o.Name], "%s accepted", o)
	}
	// Nothing was stored.
	_, err = cs.AppsV1().StatefulSets(namespace).Get(ctx, "nats", metav1.GetOptions{})
	assert.Error(t, err, "a dry run stores nothing")
}

// TestRBAC applies the install for real and asks the API server's RBAC
// authorizer what the prober's ServiceAccount, an operator and a viewer
// may do: what the prober needs, and nothing more.
func TestRBAC(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	cs, err := env.Clientset()
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	out, err := env.Kubectl(ctx, "apply", "-k", dir)
	require.NoError(t, err, "%s", out)
	for user, role := range map[string]string{"alice": "prober-operator", "bob": "prober-viewer"} {
		_, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	const (
		prober = "system:serviceaccount:" + namespace + ":prober"
		cm     = "prober-maintenance"
	)
	tests := []struct {
		user, verb, group, resource, sub, ns, name string
		allowed                                    bool
	}{
		// The prober: the maintenance ConfigMap, read and update.
		{prober, "get", "", "configmaps", "", namespace, cm, true},
		{prober, "update", "", "configmaps", "", namespace, cm, true},
		{prober, "watch", "", "configmaps", "", namespace, cm, true},
		{prober, "list", "", "configmaps", "", namespace, cm, true},
		// … and no other ConfigMap, no create, patch or delete.
		{prober, "get", "", "configmaps", "", namespace, "other", false},
		{prober, "list", "", "configmaps", "", namespace, "", false},
		{prober, "create", "", "configmaps", "", namespace, "", false},
		{prober, "patch", "", "configmaps", "", namespace, cm, false},
		{prober, "delete", "", "configmaps", "", namespace, cm, false},
		// Pods: discovery only.
		{prober, "list", "", "pods", "", namespace, "", true},
		{prober, "watch", "", "pods", "", namespace, "", true},
		{prober, "get", "", "pods", "", namespace, "nats-0", true},
		// A rollout with restart deletes the pod in its turn.
		{prober, "delete", "", "pods", "", namespace, "nats-0", true},
		{prober, "delete", "", "pods", "", "default", "nats-0", false},
		{prober, "create", "", "pods", "exec", namespace, "nats-0", false},
		{prober, "list", "", "pods", "", "default", "", false},
		// Events: what a preStop hand-off did, on the pod.
		{prober, "create", "", "events", "", namespace, "", true},
		{prober, "create", "", "events", "", "default", "", false},
		{prober, "delete", "", "events", "", namespace, "", false},
		// Reviews, cluster-wide.
		{prober, "create", "authentication.k8s.io", "tokenreviews", "", "", "", true},
		{prober, "create", "authorization.k8s.io", "subjectaccessreviews", "", "", "", true},
		// Nothing else.
		{prober, "get", "", "secrets", "", namespace, "", false},
		{prober, "update", "apps", "statefulsets", "", namespace, "nats", false},
		// The callers' roles.
		{"alice", "update", "", "configmaps", "", namespace, cm, true},
		{"alice", "get", "", "configmaps", "", namespace, cm, true},
		{"alice", "update", "", "configmaps", "", namespace, "other", false},
		{"bob", "get", "", "configmaps", "", namespace, cm, true},
		{"bob", "update", "", "configmaps", "", namespace, cm, false},
		{"carol", "get", "", "configmaps", "", namespace, cm, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s/%s %s", tt.user, tt.verb, tt.resource, tt.sub, tt.name), func(t *testing.T) {
			sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   tt.user,
					Groups: groupsOf(tt.user),
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: tt.ns, Verb: tt.verb, Group: tt.group, Resource: tt.resource,
						Subresource: tt.sub, Name: tt.name,
					},
				},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
			assert.Equal(t, tt.allowed, sar.Status.Allowed, "reason: %s", sar.Status.Reason)
		})
	}

	t.Run("the prober reads and watches the ConfigMap as the store does", func(t *testing.T) {
		proberClient(t, env, cs)
	})
}

// groupsOf returns the groups the API server gives a user: a
// ServiceAccount's groups, or just system:authenticated.
func groupsOf(user string) []string {
	groups := []string{"system:authenticated"}
	if strings.HasPrefix(user, "system:serviceaccount:") {
		groups = append(groups, "system:serviceaccounts", "system:serviceaccounts:"+namespace)
	}
	return groups
}

// proberClient lists and watches the maintenance ConfigMap with the field
// selector the store uses, and lists the pods, as the prober's
// ServiceAccount: resourceNames allow exactly that.
func proberClient(t *testing.T, env *kubetest.Env, admin kubernetes.Interface) {
	ctx := context.Background()
	secs := int64(600)
	tr, err := admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "prober",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := env.RESTConfig()
	cfg.BearerToken = tr.Status.Token
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	sel := metav1.ListOptions{FieldSelector: "metadata.name=prober-maintenance"}
	l, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, sel)
	require.NoError(t, err)
	require.Len(t, l.Items, 1)
	w, err := cs.CoreV1().ConfigMaps(namespace).Watch(ctx, sel)
	require.NoError(t, err)
	w.Stop()
	cm := l.Items[0].DeepCopy()
	cm.Data = map[string]string{"pod.nats-0": `{"since":"2026-01-02T03:04:05Z"}`}
	_, err = cs.CoreV1().ConfigMaps(namespace).Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	require.Error(t, err, "an unfiltered list is forbidden")
	_, err = cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=nats"})
	require.NoError(t, err)
}

// TestNATSConfigQuiesce starts a NATS server from the shipped nats.conf
// (ports and store moved to a temp folder) and quiesces and resumes it the
// way the sidecar does: the kernel fence rewrites the included file and
// reloads.
func TestNATSConfigQuiesce(t *testing.T) {
	conf, err := os.ReadFile("nats.conf")
	require.NoError(t, err)
	root := t.TempDir()
	ports := freePorts(t, 3)
	text := string(conf)
	for from, to := range map[string]string{
		"0.0.0.0:4222":    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"0.0.0.0:8222":    fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"0.0.0.0:6222":    fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"/data/jetstream": filepath.Join(root, "data"),
		"/var/run/nats/":  root + "/",
	} {
		require.Contains(t, text, from)
		text = strings.ReplaceAll(text, from, to)
	}
	// The folders of the pod: the ConfigMap mount and the shared emptyDir.
	confFile := filepath.Join(root, "etc", "nats-config", "nats.conf")
	include := filepath.Join(root, "etc", "nats-maintenance", "jetstream.conf")
	require.NoError(t, os.MkdirAll(filepath.Dir(confFile), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(include), 0o755))
	require.NoError(t, os.WriteFile(confFile, []byte(text), 0o600))
	for k, v := range map[string]string{
		"POD_NAME": "nats-0", "NATS_CLUSTER_NAME": "dc1",
		"SYS_USER": "sys", "SYS_PASSWORD": "sys-pw", "APP_USER": "app", "APP_PASSWORD": "app-pw",
	} {
		t.Setenv(k, v)
	}

	monitor := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	var s *server.Server
	fence := natsraft.NewKernelFence(natsraft.KernelFenceOptions{
		ConfigInclude: include,
		Reload:        func(context.Context) error { return s.Reload() },
		MonitorURL:    monitor,
		Logger:        zerolog.Nop(),
	})
	// The sidecar creates the included file before NATS starts.
	require.NoError(t, fence.EnsureInclude())

	opts, err := server.ProcessConfigFile(confFile)
	require.NoError(t, err)
	assert.Equal(t, "nats-0", opts.ServerName)
	assert.Equal(t, "dc1", opts.Cluster.Name)
	assert.Equal(t, "SYS", opts.SystemAccount)
	assert.True(t, opts.JetStream)
	opts.NoLog, opts.NoSigs = true, true
	s, err = server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	require.Eventually(t, s.JetStreamEnabled, 10*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	assert.False(t, fence.Quiesced())
	require.NoError(t, fence.Quiesce(ctx))
	assert.False(t, s.JetStreamEnabled(), "JetStream off after the quiesce")
	assert.True(t, fence.Quiesced())
	require.NoError(t, fence.Resume(ctx))
	assert.True(t, s.JetStreamEnabled(), "JetStream on after the resume")
	assert.False(t, fence.Quiesced())
}

// freePorts returns n free loopback ports.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(tb, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		require.NoError(tb, ln.Close())
	}
	return ports
}
