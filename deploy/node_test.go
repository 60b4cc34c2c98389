package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/tools/kubenode"
	"github.com/prober-dev/prober/tools/kubenode/podclient/events"
	"github.com/prober-dev/prober/tools/newman"
)

// The flows of a user on a real node (tools/kubenode): deploy/ installed
// with `kubectl apply -k` through an overlay that only swaps image names,
// then reached the ways users reach it. The node is started once for the
// package and shared; each flow leaves the install as it found it.

const (
	ns       = kubenode.DeployNamespace
	selector = kubenode.DeploySelector
	cmName   = "prober-maintenance"
	// includeFile is where the sidecar writes the file NATS includes.
	includeFile = "/etc/nats-maintenance/jetstream.conf"
	// The example credentials of deploy/'s generated Secret.
	appUser, appPassword = "app", "change-me-app"
)

// TestNodeInstall checks the install as it runs: the native sidecar starts
// first and writes the included file before NATS starts, every container
// runs without restarts, the Services and the PodDisruptionBudget select
// what they should, and the prober's ServiceAccount may do what it needs
// and no more.
func TestNodeInstall(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	ctx := context.Background()
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	require.Len(t, pods.Items, kubenode.DeployReplicas)

	t.Run("native sidecar first, the included file written before NATS starts", func(t *testing.T) {
		for _, p := range pods.Items {
			require.Len(t, p.Status.InitContainerStatuses, 1, p.Name)
			side := p.Status.InitContainerStatuses[0]
			assert.Equal(t, "prober", side.Name)
			require.NotNil(t, side.Started, p.Name)
			assert.True(t, *side.Started, "%s: the sidecar's startup probe passed", p.Name)
			require.NotNil(t, side.State.Running, "%s: the sidecar runs beside NATS", p.Name)
			var natsStarted time.Time
			for _, c := range p.Status.ContainerStatuses {
				if c.Name == "nats" {
					require.NotNil(t, c.State.Running, p.Name)
					natsStarted = c.State.Running.StartedAt.Time
				}
			}
			assert.False(t, natsStarted.Before(side.State.Running.StartedAt.Time),
				"%s: NATS started (%s) after the sidecar (%s)", p.Name, natsStarted, side.State.Running.StartedAt)
			// The file as NATS sees it, through the root of its process.
			pid, err := n.ContainerPID(ctx, ns, p.Name, "nats")
			require.NoError(t, err)
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, includeFile))
			require.NoError(t, err, "%s: NATS sees the included file", p.Name)
			assert.Contains(t, string(b), "Managed by prober")
			assert.NotContains(t, string(b), "enabled: false", "%s: JetStream on while not in maintenance", p.Name)
		}
	})

	t.Run("no container restarted", func(t *testing.T) {
		for _, p := range pods.Items {
			for _, c := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				assert.Zero(t, c.RestartCount, "%s/%s restarted", p.Name, c.Name)
			}
		}
	})

	t.Run("Services", func(t *testing.T) {
		for svc, want := range map[string]int{"nats-headless": 3, "nats": 3, "prober": 3} {
			eventually(t, time.Minute, "endpoints of "+svc, func() (bool, string) {
				ready, all := endpoints(t, svc)
				return len(ready) == want && len(all) == want, fmt.Sprintf("ready %v of %v", ready, all)
			})
		}
	})

	t.Run("PodDisruptionBudget allows one pod down", func(t *testing.T) {
		eventually(t, time.Minute, "PDB status", func() (bool, string) {
			pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "nats", metav1.GetOptions{})
			require.NoError(t, err)
			s := pdb.Status
			return s.ExpectedPods == 3 && s.CurrentHealthy == 3 && s.DisruptionsAllowed == 1,
				fmt.Sprintf("%+v", s)
		})
	})

	t.Run("RBAC: what the prober needs and no more", func(t *testing.T) {
		const sa = "system:serviceaccount:" + ns + ":prober"
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "configmap/" + cmName}, "yes"},
			{[]string{"update", "configmap/" + cmName}, "yes"},
			{[]string{"watch", "configmap/" + cmName}, "yes"},
			{[]string{"list", "pods"}, "yes"},
			{[]string{"watch", "pods"}, "yes"},
			{[]string{"create", "tokenreviews.authentication.k8s.io"}, "yes"},
			{[]string{"create", "subjectaccessreviews.authorization.k8s.io"}, "yes"},
			{[]string{"create", "configmaps"}, "no"},
			{[]string{"get", "configmap/other"}, "no"},
			{[]string{"delete", "configmap/" + cmName}, "no"},
			{[]string{"get", "secrets"}, "no"},
			{[]string{"delete", "pods"}, "yes"}, // a rollout with restart deletes the pod in its turn
			{[]string{"delete", "pods", "-n", "default"}, "no"},
			{[]string{"create", "pods/exec"}, "no"},
			{[]string{"list", "pods", "-n", "default"}, "no"},
		} {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, _ := n.Kubectl(ctx, append([]string{"auth", "can-i", "--as=" + sa, "-n", ns}, c.args...)...)
			cancel()
			assert.Equal(t, c.want, strings.TrimSpace(string(out)), "can the prober %s", strings.Join(c.args, " "))
		}
	})
}

// endpoints returns the addresses of a Service's EndpointSlices: those
// ready and all of them (publishNotReadyAddresses marks every one ready).
func endpoints(t *testing.T, svc string) (ready, all []string) {
	t.Helper()
	cs := clientset(t, theNode)
	l, err := cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	require.NoError(t, err)
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			name := ""
			if e.TargetRef != nil {
				name = e.TargetRef.Name
			}
			all = append(all, name)
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready = append(ready, name)
			}
		}
	}
	slices.Sort(ready)
	slices.Sort(all)
	return ready, all
}

// TestNodePortForward is the README's walkthrough through
// `kubectl port-forward pod/nats-0` with the real kubectl: nats-1 into
// maintenance (fenced, verified from its peers, NotReady in `kubectl get
// pods`, out of the clients' Service, the PodDisruptionBudget exhausted),
// nats-2 refused, a bare PUT /config, and back (Ready only once caught up).
func TestNodePortForward(t *testing.T) {
	n := sharedNode(t)
	a := forward(t, n, ns, "nats-0")
	portForwardFlow(t, n, a, ns, "nats", cmName)
}

// portForwardFlow runs the walkthrough against the API a, for the install
// whose pods are <prefix>-0..2 in namespace, with the maintenance
// ConfigMap cm.
func portForwardFlow(t *testing.T, n *kubenode.WithDeploy, a api, namespace, prefix, cm string) {
	cs := clientset(t, n)
	p0, p1, p2 := prefix+"-0", prefix+"-1", prefix+"-2"
	var v podView
	a.json(t, http.MethodGet, "/pods/"+p1, "", http.StatusOK, &v)
	require.Equal(t, "Active", v.Phase)
	require.False(t, v.InMaintenance)

	begin := time.Now()
	a.json(t, http.MethodPut, "/pods/"+p1+"?wait=60s", `{"reason":"kernel upgrade","ttl":"2h"}`, http.StatusOK, &v)
	figure(t, "PUT /pods/%s answered InMaintenance (fenced and quiesced) in %.3fs", p1, time.Since(begin).Seconds())
	assert.Equal(t, "InMaintenance", v.Phase)
	assert.True(t, v.InMaintenance)
	assert.Equal(t, "loopback", v.RequestedBy, "a port-forward arrives on the pod's loopback interface")
	assert.Empty(t, v.Raft.Leads, "%s leads nothing", p1)

	t.Run("fenced, verified from the peers", func(t *testing.T) {
		for _, peer := range []string{p0, p2} {
			r, err := routesOf(t, n, podIP(t, cs, namespace, peer))
			require.NoError(t, err)
			assert.NotContains(t, r, p1, "%s has no route to %s", peer, p1)
		}
		r, err := routesOf(t, n, podIP(t, cs, namespace, p1))
		require.NoError(t, err, "the fenced pod's monitoring port stays open")
		assert.Empty(t, r, "%s has no routes", p1)
	})

	t.Run("NotReady in kubectl get pods, out of the clients' Service, the budget spent", func(t *testing.T) {
		eventually(t, 30*time.Second, p1+" NotReady", func() (bool, string) {
			// Both containers follow the prober's readiness.
			r := kubectlReady(t, n, namespace, p1)
			return r == "0/2", "READY " + r
		})
		if namespace == ns {
			ready, all := endpoints(t, "nats")
			assert.NotContains(t, ready, p1, "the clients' Service stops routing to it")
			assert.Contains(t, all, p1)
			ready, _ = endpoints(t, "nats-headless")
			assert.Contains(t, ready, p1, "routes keep their DNS name (publishNotReadyAddresses)")
			ready, _ = endpoints(t, "prober")
			assert.Contains(t, ready, p1, "its API stays reachable")
		}
		eventually(t, time.Minute, "PDB with one pod in maintenance", func() (bool, string) {
			pdbs, err := cs.PolicyV1().PodDisruptionBudgets(namespace).List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			require.Len(t, pdbs.Items, 1)
			s := pdbs.Items[0].Status
			return s.CurrentHealthy == 2 && s.DisruptionsAllowed == 0, fmt.Sprintf("%+v", s)
		})
	})

	t.Run("a second pod is refused with 409", func(t *testing.T) {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Group string `json:"group"`
				} `json:"details"`
			} `json:"error"`
		}
		a.json(t, http.MethodPut, "/pods/"+p2, "", http.StatusConflict, &e)
		assert.Equal(t, "unsafe", e.Error.Code)
		require.NotEmpty(t, e.Error.Details)
		assert.Equal(t, "_meta_", e.Error.Details[0].Group)
	})

	t.Run("a bare PUT /config answers the stored document", func(t *testing.T) {
		var got, want struct {
			Pods map[string]json.RawMessage `json:"pods"`
			DCs  map[string]json.RawMessage `json:"dcs"`
		}
		a.json(t, http.MethodPut, "/config", "", http.StatusOK, &got)
		a.json(t, http.MethodGet, "/config", "", http.StatusOK, &want)
		assert.Equal(t, want, got)
		assert.Contains(t, got.Pods, p1)
		assert.NotContains(t, got.Pods, p2, "the refusal wrote nothing")
	})

	t.Run("back: Ready only once caught up", func(t *testing.T) {
		// Watch the pod's readiness and the stored status while leaving:
		// the pod must not turn Ready before its status has gone (Active).
		stop := make(chan struct{})
		var early []string
		var watched sync.WaitGroup
		watched.Add(1)
		go func() {
			defer watched.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				p, err := cs.CoreV1().Pods(namespace).Get(context.Background(), p1, metav1.GetOptions{})
				if err != nil || !kubenode.PodReady(p) {
					continue
				}
				// Ready now: the status must be gone (or Active).
				c, err := cs.CoreV1().ConfigMaps(namespace).Get(context.Background(), cm, metav1.GetOptions{})
				if err == nil {
					if raw, ok := c.Data["status."+p1]; ok && !strings.Contains(raw, `"Active"`) {
						early = append(early, raw)
					}
				}
			}
		}()
		begin := time.Now()
		a.json(t, http.MethodDelete, "/pods/"+p1+"?wait=120s", "", http.StatusOK, &v)
		answered := time.Since(begin)
		assert.Equal(t, "Active", v.Phase)
		eventually(t, time.Minute, p1+" Ready", func() (bool, string) {
			r := kubectlReady(t, n, namespace, p1)
			return r == "2/2", "READY " + r
		})
		ready := time.Since(begin)
		close(stop)
		watched.Wait()
		assert.Empty(t, early, "the pod turned Ready before it had caught up")
		a.json(t, http.MethodGet, "/pods/"+p1, "", http.StatusOK, &v)
		assert.True(t, v.Raft.Current, "caught up in every group, as the view shows it")
		figure(t, "DELETE /pods/%s: Active (caught up) in %.3fs, the pod Ready in kubectl after %.3fs", p1, answered.Seconds(), ready.Seconds())
		for _, peer := range []string{p0, p2} {
			eventually(t, 30*time.Second, peer+" routes to "+p1, func() (bool, string) {
				r, err := routesOf(t, n, podIP(t, cs, namespace, peer))
				return err == nil && slices.Contains(r, p1), fmt.Sprintf("%v %v", r, err)
			})
		}
		var doc struct {
			Pods   map[string]json.RawMessage `json:"pods"`
			Status map[string]json.RawMessage `json:"status"`
		}
		a.json(t, http.MethodGet, "/config", "", http.StatusOK, &doc)
		assert.Empty(t, doc.Pods)
		for pod, raw := range doc.Status {
			// Back from maintenance, a pod keeps its give-back report
			// (phase Active) for a while.
			var st maintenance.Status
			require.NoError(t, json.Unmarshal(raw, &st))
			assert.Equal(t, maintenance.PhaseActive, st.Phase, "status of %s", pod)
		}
	})
}

// TestNodeExecFromPod calls the API from another pod with its own
// ServiceAccount's projected token, as a job would: 401 without a token,
// 403 without RBAC, 200 with a RoleBinding; the token appears in no log.
func TestNodeExecFromPod(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	ctx := context.Background()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "maintainer"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.CoreV1().ServiceAccounts(ns).Delete(context.Background(), "maintainer", metav1.DeleteOptions{})
		_ = cs.RbacV1().RoleBindings(ns).Delete(context.Background(), "maintainer", metav1.DeleteOptions{})
	})
	clientPod(t, n, ns, "maintainer", "maintainer")

	const (
		url       = "http://nats-1.nats-headless:8889/pods/nats-1"
		tokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	)
	call := func(args ...string) (int, string) {
		out, err := kubectlExec(t, n, ns, "maintainer", append([]string{"/podclient", "http"}, args...)...)
		require.NoError(t, err, "%s", out)
		return httpLine(t, out)
	}

	code, body := call(url)
	assert.Equal(t, http.StatusUnauthorized, code, "no token: %s", body)
	assert.Contains(t, body, `"code": "unauthorized"`)

	code, body = call("-token-file", tokenFile, url)
	assert.Equal(t, http.StatusForbidden, code, "a token without RBAC: %s", body)

	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "maintainer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "prober-viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "maintainer", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// A denial is cached for a moment: ask until the binding counts.
	eventually(t, 30*time.Second, "200 with the viewer role", func() (bool, string) {
		code, body = call("-token-file", tokenFile, url)
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
	var v podView
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	assert.Equal(t, "nats-1", v.Pod)
	assert.Equal(t, "Active", v.Phase)

	code, body = call("-token-file", tokenFile, "-X", "PUT", url+"?dryRun=true")
	assert.Equal(t, http.StatusForbidden, code, "the viewer may not PUT: %s", body)

	token, err := kubectlExec(t, n, ns, "maintainer", "/podclient", "cat", tokenFile)
	require.NoError(t, err)
	token = strings.TrimSpace(token)
	require.Greater(t, len(token), 100, "a projected ServiceAccount token")
	logs := podLogs(t, n, ns)
	var sawCaller bool
	for name, b := range logs {
		assert.NotContains(t, string(b), token, "the token appears in the log of %s", name)
		if strings.Contains(string(b), "system:serviceaccount:"+ns+":maintainer") {
			sawCaller = true
		}
	}
	assert.True(t, sawCaller, "the probers logged the caller (by name): the logs checked are those of these requests")
	// The node's own components log nothing of it either.
	ents, err := os.ReadDir(n.Logs())
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(n.Logs(), e.Name()))
		require.NoError(t, err)
		assert.NotContains(t, string(b), token, "the token appears in %s", e.Name())
	}
}

// TestNodePostman runs the Postman collection with newman
// (scripts/newman.sh) through a port-forward to nats-0.
func TestNodePostman(t *testing.T) {
	n := sharedNode(t)
	// The collection's data, as the embedded default creates it: the R3
	// stream demo and its R3 consumer.
	nc := natsConn(t, n)
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	require.NoError(t, err)
	_, err = js.AddStream(&nats.StreamConfig{Name: "demo", Subjects: []string{"demo.>"}, Replicas: 3, Storage: nats.FileStorage})
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.DeleteStream("demo") })
	_, err = js.AddConsumer("demo", &nats.ConsumerConfig{Durable: "demo-consumer", AckPolicy: nats.AckExplicitPolicy, Replicas: 3})
	require.NoError(t, err)
	a := forward(t, n, ns, "nats-0")
	// Every prober sees the three groups before the collection counts them.
	eventually(t, time.Minute, "three Raft groups in /raft", func() (bool, string) {
		var r struct {
			Groups []struct {
				Name   string `json:"name"`
				Leader string `json:"leader"`
			} `json:"groups"`
		}
		a.json(t, http.MethodGet, "/raft", "", http.StatusOK, &r)
		led := 0
		for _, g := range r.Groups {
			if g.Leader != "" {
				led++
			}
		}
		return len(r.Groups) == 3 && led == 3, fmt.Sprint(r.Groups)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := newman.Run(ctx, repo, a.base, t.TempDir())
	require.NoError(t, err, "%s", res.Output)
	rep := res.Report
	for _, f := range rep.Run.Failures {
		t.Errorf("%s: %s: %s", f.Source.Name, f.Error.Test, f.Error.Message)
	}
	require.NoError(t, res.Exit, "newman:\n%s", res.Output)
	// Requests that poll (postman.setNextRequest) run more than once.
	requests, err := newman.Requests(repo)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, rep.Run.Stats["requests"].Total, requests, "every request ran")
	assert.Zero(t, rep.Run.Stats["assertions"].Failed)
	t.Logf("newman: %d requests, %d assertions through kubectl port-forward", rep.Run.Stats["requests"].Total, rep.Run.Stats["assertions"].Total)
	waitAllReady(t, n, ns, selector)
}

// TestNodeFenceInPod puts the stream leader's pod into maintenance while a
// publisher in a client pod, connected to that pod, writes to the stream:
// the publisher is moved and reconnects elsewhere, keeps writing, and
// every acknowledged message is kept; the peers have no route to the pod;
// the nftables table exists in that pod's network namespace only; NATS
// reloaded by signal with JetStream off.
func TestNodeFenceInPod(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	nc := natsConn(t, n)
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	require.NoError(t, err)
	info, err := js.AddStream(&nats.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3,
		Storage: nats.FileStorage, Duplicates: 5 * time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.DeleteStream("ORDERS") })
	eventually(t, 30*time.Second, "the stream has a leader", func() (bool, string) {
		info, err = js.StreamInfo("ORDERS")
		return err == nil && info.Cluster != nil && info.Cluster.Leader != "", fmt.Sprint(err)
	})
	leader := info.Cluster.Leader
	t.Logf("stream ORDERS is led by %s", leader)

	clientPod(t, n, ns, "publisher", "")
	pub := startPublisher(t, n, "publisher", leader, "orders.new")
	require.Equal(t, leader, pub.waitEvent(t, "publishing").Server, "the publisher writes through the pod that will be fenced")

	a := forward(t, n, ns, "nats-0")
	var v podView
	a.json(t, http.MethodPut, "/pods/"+leader+"?wait=60s", `{"reason":"fence in a pod"}`, http.StatusOK, &v)
	require.Equal(t, "InMaintenance", v.Phase)

	t.Run("its clients were moved and reconnect elsewhere", func(t *testing.T) {
		e := pub.waitEvent(t, "reconnected")
		assert.NotEqual(t, leader, e.Server)
		seq := streamLast(t, js)
		eventually(t, 30*time.Second, "the publisher keeps writing", func() (bool, string) {
			now := streamLast(t, js)
			return now >= seq+200, fmt.Sprintf("last sequence %d, was %d", now, seq)
		})
	})

	t.Run("the peers have no route to it", func(t *testing.T) {
		for _, peer := range []string{"nats-0", "nats-1", "nats-2"} {
			if peer == leader {
				continue
			}
			r, err := routesOf(t, n, podIP(t, cs, ns, peer))
			require.NoError(t, err)
			assert.NotContains(t, r, leader)
		}
	})

	t.Run("the nftables table is in that pod's network namespace only", func(t *testing.T) {
		const table = "table inet prober_fence"
		assert.Contains(t, nftTables(t, containerNetNS(t, n, ns, leader, "nats")), table)
		assert.Contains(t, nftTables(t, containerNetNS(t, n, ns, leader, "prober")), table, "the sidecar shares the pod's namespace")
		for _, other := range []string{"nats-0", "nats-1", "nats-2"} {
			if other != leader {
				assert.NotContains(t, nftTables(t, containerNetNS(t, n, ns, other, "nats")), table, other)
			}
		}
		assert.NotContains(t, nftTables(t, n.NetNS()), table, "not in the node's namespace")
		assert.NotContains(t, nftTables(t, ""), table, "not in the host's")
	})

	t.Run("NATS reloaded by signal, JetStream off", func(t *testing.T) {
		pid, err := n.ContainerPID(context.Background(), ns, leader, "nats")
		require.NoError(t, err)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, includeFile))
		require.NoError(t, err)
		assert.Contains(t, string(b), "jetstream { enabled: false }")
		var r raftView
		a.json(t, http.MethodGet, "/raft", "", http.StatusOK, &r)
		for _, node := range r.Nodes {
			if node.Name == leader {
				assert.False(t, node.JetStream, "JetStream is off on %s", leader)
				assert.Empty(t, node.Routes)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		logs, err := n.Kubectl(ctx, "-n", ns, "logs", leader, "-c", "nats")
		require.NoError(t, err)
		assert.Contains(t, string(logs), "Reloaded server configuration", "the SIGHUP of the sidecar reached NATS")
	})

	a.json(t, http.MethodDelete, "/pods/"+leader+"?wait=120s", "", http.StatusOK, &v)
	require.Equal(t, "Active", v.Phase)
	waitAllReady(t, n, ns, selector)

	sum := pub.stop(t, nc)
	figure(t, "publisher in a pod while %s (stream leader) entered and left maintenance: %d acknowledged, max write gap %.3fs, %d failed attempts (retried), servers %v",
		leader, sum.Acked, sum.MaxGap, sum.Failed, sum.Servers)
	assertKept(t, js, "ORDERS", sum)
}

// TestNodeSidecarKilled kills the sidecar of a pod in maintenance: the
// fence stays while it is down, and the restarted prober converges (the
// pod stays in maintenance) and leaves cleanly on DELETE.
func TestNodeSidecarKilled(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	a := forward(t, n, ns, "nats-0")
	const target = "nats-2"
	var v podView
	a.json(t, http.MethodPut, "/pods/"+target+"?wait=60s", `{"reason":"sidecar fault"}`, http.StatusOK, &v)
	require.Equal(t, "InMaintenance", v.Phase)
	netns := containerNetNS(t, n, ns, target, "nats")
	restarts := sidecarRestarts(t, target)

	ctx := context.Background()
	pid, err := n.ContainerPID(ctx, ns, target, "prober")
	require.NoError(t, err)
	proc, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, proc.Kill())
	t.Logf("killed the prober of %s (pid %d)", target, pid)

	// Until the kubelet has restarted it, and after, the fence holds.
	for sidecarRestarts(t, target) == restarts || !sidecarStarted(t, target) {
		assert.Contains(t, nftTables(t, netns), "table inet prober_fence", "the fence holds while the sidecar is down")
		for _, peer := range []string{"nats-0", "nats-1"} {
			r, err := routesOf(t, n, podIP(t, cs, ns, peer))
			require.NoError(t, err)
			require.NotContains(t, r, target, "%s routes to %s while its sidecar is down", peer, target)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the kubelet restarted the sidecar of %s", target)

	eventually(t, time.Minute, "the restarted prober reports the pod in maintenance", func() (bool, string) {
		code, b := a.do(t, http.MethodGet, "/pods/"+target, "")
		if code != http.StatusOK {
			return false, string(b)
		}
		require.NoError(t, json.Unmarshal(b, &v))
		return v.Phase == "InMaintenance" && statusPhase(t, cs, ns, cmName, target) == "InMaintenance", v.Phase + " " + v.Message
	})
	assert.Contains(t, nftTables(t, netns), "table inet prober_fence")
	r, err := routesOf(t, n, podIP(t, cs, ns, target))
	require.NoError(t, err)
	assert.Empty(t, r, "still fenced after the restart")
	eventually(t, 30*time.Second, target+" still not ready", func() (bool, string) {
		r := kubectlReady(t, n, ns, target)
		return r == "0/2", "READY " + r
	})

	a.json(t, http.MethodDelete, "/pods/"+target+"?wait=120s", "", http.StatusOK, &v)
	assert.Equal(t, "Active", v.Phase)
	waitAllReady(t, n, ns, selector)
	assert.NotContains(t, nftTables(t, netns), "prober_fence", "the fence is lifted")
}

// sidecarRestarts returns the restart count of a pod's prober container.
func sidecarRestarts(t *testing.T, name string) int32 {
	p := pod(t, clientset(t, theNode), ns, name)
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "prober" {
			return s.RestartCount
		}
	}
	return 0
}

// sidecarStarted reports whether a pod's prober runs and passed its
// startup probe.
func sidecarStarted(t *testing.T, name string) bool {
	p := pod(t, clientset(t, theNode), ns, name)
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "prober" {
			return s.State.Running != nil && s.Started != nil && *s.Started
		}
	}
	return false
}

// TestNodePodDeletedInMaintenance deletes a pod in maintenance: the
// StatefulSet brings it back, and it must come back fenced and quiesced
// (its entry is still in the ConfigMap) and leave cleanly on DELETE.
func TestNodePodDeletedInMaintenance(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	a := forward(t, n, ns, "nats-0")
	const target = "nats-1"
	var v podView
	a.json(t, http.MethodPut, "/pods/"+target+"?wait=60s", `{"reason":"node drain"}`, http.StatusOK, &v)
	require.Equal(t, "InMaintenance", v.Phase)
	old := pod(t, cs, ns, target)
	ctx := context.Background()
	require.NoError(t, cs.CoreV1().Pods(ns).Delete(ctx, target, metav1.DeleteOptions{}))

	// The new pod's NATS process, as soon as it runs: was the fence up and
	// the "off" file written before it started?
	var natsPID int
	eventually(t, 3*time.Minute, "the new "+target+"'s NATS runs", func() (bool, string) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, target, metav1.GetOptions{})
		if err != nil || p.UID == old.UID {
			return false, fmt.Sprint("old pod or ", err)
		}
		pid, err := n.ContainerPID(ctx, ns, target, "nats")
		if err != nil {
			return false, err.Error()
		}
		natsPID = pid
		return true, ""
	})
	include, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", natsPID, includeFile))
	require.NoError(t, err)
	tablesAtStart := nftTables(t, fmt.Sprintf("/proc/%d/ns/net", natsPID))
	quiescedAtStart := strings.Contains(string(include), "enabled: false")
	fencedAtStart := strings.Contains(tablesAtStart, "prober_fence")
	var leaked []string
	for _, peer := range []string{"nats-0", "nats-2"} {
		if r, err := routesOf(t, n, podIP(t, cs, ns, peer)); err == nil && slices.Contains(r, target) {
			leaked = append(leaked, peer)
		}
	}
	t.Logf("new %s at its NATS start: quiesced=%v fenced=%v, peers with a route to it: %v", target, quiescedAtStart, fencedAtStart, leaked)

	// The new pod stays in maintenance:
	// fenced (read from the kernel and the peers), quiesced (the file NATS
	// includes), not ready.
	newNS := fmt.Sprintf("/proc/%d/ns/net", natsPID)
	eventually(t, 2*time.Minute, "the new "+target+" fenced and quiesced", func() (bool, string) {
		if !strings.Contains(nftTables(t, newNS), "prober_fence") {
			return false, "no fence table"
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", natsPID, includeFile))
		if err != nil || !strings.Contains(string(b), "enabled: false") {
			return false, fmt.Sprintf("include %q %v", b, err)
		}
		for _, peer := range []string{"nats-0", "nats-2"} {
			r, err := routesOf(t, n, podIP(t, cs, ns, peer))
			if err != nil || slices.Contains(r, target) {
				return false, fmt.Sprintf("%s routes %v %v", peer, r, err)
			}
		}
		code, b := a.do(t, http.MethodGet, "/pods/"+target, "")
		if code != http.StatusOK || json.Unmarshal(b, &v) != nil {
			return false, string(b)
		}
		return v.Phase == "InMaintenance" && kubectlReady(t, n, ns, target) == "0/2", v.Phase + " READY " + kubectlReady(t, n, ns, target)
	})

	a.json(t, http.MethodDelete, "/pods/"+target+"?wait=180s", "", http.StatusOK, &v)
	assert.Equal(t, "Active", v.Phase)
	waitAllReady(t, n, ns, selector)

	assert.True(t, quiescedAtStart, "the new pod's NATS started with JetStream off (the \"off\" include written before it)")
	assert.True(t, fencedAtStart, "the new pod's NATS started behind the nftables table")
	assert.Empty(t, leaked, "no peer routed to the new pod")
}

// TestNodeCoreDNSStopped stops the cluster DNS and restarts a NATS pod: it
// cannot resolve its routes, and /raft names DNS as the cause.
func TestNodeCoreDNSStopped(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	a := forward(t, n, ns, "nats-0")
	const target = "nats-2"
	n.StopCoreDNS()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			assert.NoError(t, n.StartCoreDNS(ctx))
		}
	})
	old := pod(t, cs, ns, target)
	require.NoError(t, cs.CoreV1().Pods(ns).Delete(context.Background(), target, metav1.DeleteOptions{}))
	var finding string
	eventually(t, 3*time.Minute, "/raft names DNS for "+target, func() (bool, string) {
		var r raftView
		code, b := a.do(t, http.MethodGet, "/raft", "")
		if code != http.StatusOK || json.Unmarshal(b, &r) != nil {
			return false, string(b)
		}
		var causes []string
		for _, f := range r.Findings {
			causes = append(causes, f.Cause+" "+strings.Join(f.Nodes, ","))
			if f.Cause == "DNS" && slices.Contains(f.Nodes, target) {
				finding = f.Summary + "\n  evidence: " + strings.Join(f.Evidence, "\n            ") + "\n  remedy: " + strings.Join(f.Remedy, " ")
				return true, ""
			}
		}
		return false, strings.Join(causes, "; ")
	})
	t.Logf("/raft with CoreDNS stopped:\n%s", finding)
	assert.NotEqual(t, old.UID, pod(t, cs, ns, target).UID)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, n.StartCoreDNS(ctx))
	restarted = true
	waitAllReady(t, n, ns, selector)
	eventually(t, time.Minute, "the DNS finding gone", func() (bool, string) {
		var r raftView
		a.json(t, http.MethodGet, "/raft", "", http.StatusOK, &r)
		for _, f := range r.Findings {
			if f.Cause == "DNS" {
				return false, f.Summary
			}
		}
		return true, ""
	})
}

// TestNodeHelmChart installs the official NATS Helm chart (read from
// /work/shared/third_party/nats-helm-chart at test time, unmodified) with
// the prober added through the chart's own values (deploy/helm), rendered
// by helm, and runs the port-forward walkthrough against it.
func TestNodeHelmChart(t *testing.T) {
	n := sharedNode(t)
	chart := os.Getenv("PROBER_NATS_CHART")
	if chart == "" {
		chart = "/work/shared/third_party/nats-helm-chart"
	}
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		t.Skipf("the NATS Helm chart is not at %s (set PROBER_NATS_CHART): the chart install was not tested: %v", chart, err)
	}
	const (
		namespace = "nats-helm"
		release   = "nats"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	version, err := runCmd(ctx, helmBin(n), "version", "--short")
	require.NoError(t, err, "%s", version)
	t.Logf("helm %s, chart %s", strings.TrimSpace(string(version)), chart)
	require.NoError(t, n.EnsureNamespace(ctx, namespace))
	args := []string{"install", release, chart, "--kubeconfig", n.Kubeconfig, "-n", namespace,
		"-f", filepath.Join(repo, "deploy", "helm", "values.yaml"),
		"--set", "prober.image=" + n.Images.Refs["prober"],
		"--set", "container.image.fullImageName=" + n.Images.Refs["nats-server"],
		"--set", "container.image.pullPolicy=Never",
	}
	begin := time.Now()
	out, err := runCmd(ctx, helmBin(n), args...)
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := runCmd(ctx, helmBin(n), "uninstall", release, "--kubeconfig", n.Kubeconfig, "-n", namespace, "--wait")
		assert.NoError(t, err, "%s", out)
		_, _ = n.Kubectl(ctx, "delete", "namespace", namespace, "--wait=false")
	})
	hsel := "app.kubernetes.io/name=nats,app.kubernetes.io/instance=" + release
	wctx, wcancel := context.WithTimeout(ctx, 4*time.Minute)
	defer wcancel()
	require.NoError(t, kubenode.WaitPodsReady(wctx, clientset(t, n), namespace, hsel, 3))
	figure(t, "helm install of the NATS chart with the prober: 3 pods Ready in %.1fs", time.Since(begin).Seconds())

	p := pod(t, clientset(t, n), namespace, release+"-0")
	require.Len(t, p.Spec.InitContainers, 1)
	assert.Equal(t, "prober", p.Spec.InitContainers[0].Name)
	require.NotNil(t, p.Spec.ShareProcessNamespace)
	assert.True(t, *p.Spec.ShareProcessNamespace)

	a := forward(t, n, namespace, release+"-0")
	portForwardFlow(t, n, a, namespace, release, release+"-maintenance")
}

// TestNodeLogs reads every log of the install after the flows: no
// container was refused by the API server (RBAC is enough), and no
// container other than the ones the faults killed restarted. The API
// server words a refusal `<resource> "<name>" is forbidden: User ...
// cannot ...` (StatusReasonForbidden: "Forbidden"); a sidecar's own 403 to
// a caller it does not know yet (GET /local/report from a pod just
// started) is not one.
func TestNodeLogs(t *testing.T) {
	n := sharedNode(t)
	for name, b := range podLogs(t, n, ns) {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "is forbidden") || strings.Contains(line, "Forbidden") {
				t.Errorf("%s: %s", name, line)
			}
		}
	}
}

// natsConn connects the test to the install's NATS servers as the app
// user, through the node's network namespace.
func natsConn(t *testing.T, n *kubenode.WithDeploy) *nats.Conn {
	t.Helper()
	cs := clientset(t, n)
	var urls []string
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		urls = append(urls, "nats://"+podIP(t, cs, ns, p)+":4222")
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(appUser, appPassword), nats.SetCustomDialer(n),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.IgnoreDiscoveredServers())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// streamLast returns the stream's last sequence.
func streamLast(t *testing.T, js nats.JetStreamContext) uint64 {
	t.Helper()
	info, err := js.StreamInfo("ORDERS")
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// publisher is podclient's publish running in a pod through kubectl exec.
type publisher struct {
	stopSubject string
	events      chan events.Event
	done        chan error
}

// startPublisher runs the publisher in the client pod, connected first to
// the pod named first.
func startPublisher(t *testing.T, n *kubenode.WithDeploy, podName, first, subject string) *publisher {
	t.Helper()
	servers := []string{"nats://" + first + ".nats-headless:4222"}
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		if p != first {
			servers = append(servers, "nats://"+p+".nats-headless:4222")
		}
	}
	p := &publisher{stopSubject: "ctl.stop." + strconv.FormatInt(time.Now().UnixNano(), 36), events: make(chan events.Event, 1024), done: make(chan error, 1)}
	cmd := n.KubectlCmd(context.Background(), "-n", ns, "exec", podName, "--", "/podclient", "publish",
		"-servers", strings.Join(servers, ","), "-user", appUser, "-password", appPassword,
		"-subject", subject, "-stop-subject", p.stopSubject, "-rate", "200")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		_ = events.Read(out, func(e events.Event) { p.events <- e })
		p.done <- cmd.Wait()
		close(p.events)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// waitEvent returns the next event of the kind, skipping others.
func (p *publisher) waitEvent(t *testing.T, kind string) events.Event {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case e, ok := <-p.events:
			require.True(t, ok, "the publisher ended before %q", kind)
			if e.Event == kind {
				return e
			}
			if e.Event == "gap" || e.Event == "disconnected" {
				t.Logf("publisher: %s %.3fs %s %s", e.Event, e.Gap, e.Server, e.Error)
			}
		case <-timeout:
			t.Fatalf("no %q event from the publisher", kind)
		}
	}
}

// stop tells the publisher to stop and returns its summary.
func (p *publisher) stop(t *testing.T, nc *nats.Conn) events.Event {
	t.Helper()
	require.NoError(t, nc.Publish(p.stopSubject, nil))
	require.NoError(t, nc.Flush())
	return p.waitEvent(t, "summary")
}

// assertKept reads the whole stream and checks that every acknowledged id
// is stored, once.
func assertKept(t *testing.T, js nats.JetStreamContext, stream string, sum events.Event) {
	t.Helper()
	acked, err := events.ParseRanges(sum.AckedIDs)
	require.NoError(t, err)
	require.Len(t, acked, sum.Acked)
	require.NotEmpty(t, acked)
	info, err := js.StreamInfo(stream)
	require.NoError(t, err)
	stored := map[int]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := js.GetMsg(stream, seq)
		require.NoError(t, err, "message %d", seq)
		id, err := strconv.Atoi(string(m.Data))
		require.NoError(t, err)
		stored[id]++
	}
	var missing, twice []int
	for _, id := range acked {
		switch stored[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	assert.Empty(t, missing, "acknowledged messages missing from the stream")
	assert.Empty(t, twice, "acknowledged messages stored twice")
	t.Logf("all %d acknowledged messages are in the stream (%d stored)", len(acked), info.State.Msgs)
}
