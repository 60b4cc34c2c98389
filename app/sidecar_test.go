package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/kube"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
	"github.com/prober-dev/prober/tools/kubetest"
)

// The install the sidecar tests apply: deploy/ at the repository root, in
// the namespace its kustomization sets.
const (
	scNamespace = "nats"
	scSelector  = "app.kubernetes.io/name=nats"
	scProberSA  = "prober"
	scDeployDir = "../deploy"
)

// scEnv is a real API server with the install applied, an embedded NATS
// cluster whose nodes stand for the pods, and a prober sidecar per pod.
type scEnv struct {
	kube     *kubetest.Env
	admin    kubernetes.Interface
	cluster  *natsraft.Embedded
	credDir  string
	sidecars map[string]*liveSidecar
	// reportPorts are the sidecars' API ports by pod, fixed before they
	// start: each pod's annotation names its sidecar's, where the others
	// ask for its server's report (shared sweeps, as `prober serve` runs).
	reportPorts map[string]string
	// tokens of the callers: an operator (get + update on the maintenance
	// ConfigMap), a viewer (get) and one without any binding.
	operator, viewer, stranger string
}

// liveSidecar is one Sidecar running in the background.
type liveSidecar struct {
	*app.Sidecar
	base   string
	cancel context.CancelFunc
	done   chan error
}

func scLogger(tb testing.TB) zerolog.Logger {
	if os.Getenv(appLogEnv) == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: tbWriter{tb}, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}})
}

// scToken returns a token of the ServiceAccount sa (TokenRequest API).
func scToken(tb testing.TB, admin kubernetes.Interface, sa string) string {
	tb.Helper()
	secs := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(scNamespace).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	require.NoError(tb, err, "token of %s", sa)
	return tr.Status.Token
}

// scServiceAccount creates a ServiceAccount bound to role ("" for none)
// and returns a token of it.
func scServiceAccount(tb testing.TB, admin kubernetes.Interface, name, role string) string {
	tb.Helper()
	ctx := context.Background()
	_, err := admin.CoreV1().ServiceAccounts(scNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(tb, err)
	if role != "" {
		_, err = admin.RbacV1().RoleBindings(scNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: scNamespace}},
		}, metav1.CreateOptions{})
		require.NoError(tb, err)
	}
	return scToken(tb, admin, name)
}

// scPod creates the Pod object of an embedded node, as the StatefulSet
// would, and gives it the node's address (there is no kubelet: the status
// is set by hand). The node's ports and its sidecar's (reportPort) go into
// the port annotations.
func scPod(tb testing.TB, admin kubernetes.Interface, n *natsraft.EmbeddedNode, reportPort string, extraLabels map[string]string) {
	tb.Helper()
	ctx := context.Background()
	port := func(raw string) string {
		u, err := url.Parse(raw)
		require.NoError(tb, err)
		return u.Port()
	}
	lbls := map[string]string{"app.kubernetes.io/name": "nats"}
	for k, v := range extraLabels {
		lbls[k] = v
	}
	pod, err := admin.CoreV1().Pods(scNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   n.Name(),
			Labels: lbls,
			Annotations: map[string]string{
				kube.MonitorPortAnnotation: port(n.MonitorURL()),
				kube.ClientPortAnnotation:  port(n.ClientURL()),
				kube.ReportPortAnnotation:  reportPort,
			},
		},
		// No subdomain: until its IP is set the pod has no address at all,
		// so nothing tries to resolve a cluster DNS name.
		Spec: corev1.PodSpec{
			ServiceAccountName: scProberSA,
			Containers:         []corev1.Container{{Name: "nats", Image: "nats:2.15.2-alpine"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(tb, err, "create pod %s", n.Name())
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	_, err = admin.CoreV1().Pods(scNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(tb, err, "status of pod %s", n.Name())
}

// startScEnv applies the install to a fresh API server, starts a 3-node
// embedded cluster, creates its pods and runs one sidecar per pod with the
// install's ServiceAccount, so that the install's RBAC is what they get.
func startScEnv(t *testing.T) *scEnv {
	t.Helper()
	ctx := context.Background()
	kube := kubetest.Start(t, kubetest.Options{})
	admin, err := kube.Clientset()
	require.NoError(t, err)
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	deployDir, err := filepath.Abs(scDeployDir)
	require.NoError(t, err)
	out, err := kube.Kubectl(ctx, "apply", "-k", deployDir)
	require.NoError(t, err, "%s", out)

	cctx, cancel := context.WithTimeout(ctx, appStartTimeout)
	defer cancel()
	cluster, err := natsraft.StartEmbedded(cctx, natsraft.EmbeddedOptions{Demo: true, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, cluster.Close()) })

	e := &scEnv{kube: kube, admin: admin, cluster: cluster, credDir: t.TempDir(), sidecars: map[string]*liveSidecar{},
		reportPorts: map[string]string{}}
	// The embedded cluster's users, laid out as the install mounts its
	// Secret: one folder per account.
	for file, content := range map[string]string{
		"APP/user": "app\n", "APP/password": "app\n", "SYS/user": "sys\n", "SYS/password": "sys\n",
	} {
		p := filepath.Join(e.credDir, file)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	}
	for _, n := range cluster.Nodes() {
		e.reportPorts[n.Name()] = freePort(t)
		scPod(t, admin, n, e.reportPorts[n.Name()], nil)
	}
	e.operator = scServiceAccount(t, admin, "operator", "prober-operator")
	e.viewer = scServiceAccount(t, admin, "viewer", "prober-viewer")
	e.stranger = scServiceAccount(t, admin, "stranger", "")

	proberToken := scToken(t, admin, scProberSA)
	for _, n := range cluster.Nodes() {
		e.sidecars[n.Name()] = e.startSidecar(t, n, proberToken)
	}
	for name, sc := range e.sidecars {
		waitFor(t, 60*time.Second, "/readyz of "+name, func() (bool, string) {
			code, body := e.call(t, sc, "", http.MethodGet, "/readyz", "")
			return code == http.StatusOK, body
		})
	}
	return e
}

// startSidecar runs the sidecar of node n as the prober ServiceAccount,
// with the node's gate fence as its Fence.
func (e *scEnv) startSidecar(t *testing.T, n *natsraft.EmbeddedNode, token string) *liveSidecar {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host:            e.kube.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: e.kube.CAFile},
		QPS:             100,
		Burst:           200,
	})
	require.NoError(t, err)
	log := scLogger(t).With().Str("sidecar", n.Name()).Logger()
	disc, err := kube.NewPodDiscovery(cs.CoreV1().Pods(scNamespace), kube.PodDiscoveryOptions{Selector: mustSelector(t, scSelector),
		ReportPort: 8889, Logger: log})
	require.NoError(t, err)
	dialer := &natsraft.CredentialsDialer{Dir: e.credDir, Servers: disc.ClientURLs, Name: "prober-" + n.Name()}
	running := &app.Sidecar{
		Listen:     "127.0.0.1:" + e.reportPorts[n.Name()],
		Pod:        n.Name(),
		Namespace:  scNamespace,
		ConfigMaps: cs.CoreV1(),
		Discovery:  disc,
		Fence:      n,
		Dial:       dialer.Dial,
		Auth: prober.AuthOptions{
			Authenticator: prober.NewTokenReviewAuthenticator(cs.AuthenticationV1().TokenReviews(), prober.TokenReviewOptions{Logger: log}),
			Authorizer: prober.NewSubjectAccessReviewAuthorizer(cs.AuthorizationV1().SubjectAccessReviews(),
				prober.SubjectAccessReviewOptions{Namespace: scNamespace, Name: kube.DefaultConfigMapName, Logger: log}),
			// The test's requests all come from loopback: make them
			// show their tokens, as callers from other pods must.
			LoopbackNeedsToken: true,
		},
		Resync: 2 * time.Second,
		Logger: log,
		Events: &kube.PodEvents{Pods: cs.CoreV1().Pods(scNamespace), Events: cs.CoreV1().Events(scNamespace),
			Pod: n.Name(), Namespace: scNamespace},
		// As `prober serve` runs it.
		BalanceAfterStart: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc := &liveSidecar{Sidecar: running, cancel: cancel, done: make(chan error, 1)}
	started := running.Started()
	go func() { sc.done <- running.Run(ctx) }()
	t.Cleanup(func() {
		sc.cancel()
		select {
		case err := <-sc.done:
			assert.NoError(t, err, "sidecar %s", n.Name())
		case <-time.After(appStopTimeout):
			assert.Fail(t, "sidecar did not stop", n.Name())
		}
	})
	select {
	case <-started:
	case err := <-sc.done:
		require.FailNow(t, "sidecar did not start", "%s: %v", n.Name(), err)
	case <-time.After(appStartTimeout):
		require.FailNow(t, "sidecar did not start", n.Name())
	}
	sc.base = "http://" + running.Addr()
	return sc
}

// call sends a request to a sidecar's API with token ("" for none) and
// returns the status and the body.
func (e *scEnv) call(tb testing.TB, sc *liveSidecar, token, method, path, body string) (int, string) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, sc.base+path, rd)
	require.NoError(tb, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	require.NoError(tb, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, string(b)
}

// decode requires status want and decodes the body into out.
func (e *scEnv) decode(tb testing.TB, sc *liveSidecar, token, method, path, body string, want int, out any) {
	tb.Helper()
	code, b := e.call(tb, sc, token, method, path, body)
	require.Equal(tb, want, code, "%s %s: %s", method, path, b)
	require.NoError(tb, json.Unmarshal([]byte(b), out), "%s %s: %s", method, path, b)
}

// stored reads the maintenance ConfigMap directly, as kubectl would.
func (e *scEnv) stored(tb testing.TB) (*corev1.ConfigMap, *maintenance.Document) {
	tb.Helper()
	cm, err := e.admin.CoreV1().ConfigMaps(scNamespace).Get(context.Background(), kube.DefaultConfigMapName, metav1.GetOptions{})
	require.NoError(tb, err)
	d, err := maintenance.DecodeData(cm.Data, cm.ResourceVersion)
	require.NoError(tb, err)
	return cm, d
}

// inProgress names what the document still holds besides give-back
// reports (statuses of phase Active): entries, and statuses of pods on
// their way.
func inProgress(d *maintenance.Document) []string {
	var out []string
	for pod := range d.Pods {
		out = append(out, "pod."+pod)
	}
	for dc := range d.DCs {
		out = append(out, "dc."+dc)
	}
	for pod, st := range d.Status {
		if st.Phase != maintenance.PhaseActive {
			out = append(out, "status."+pod)
		}
	}
	return out
}

// requireClean requires an empty maintenance state and every sidecar ready.
func (e *scEnv) requireClean(tb testing.TB) {
	tb.Helper()
	_, d := e.stored(tb)
	// A pod back from maintenance keeps its give-back report (phase
	// Active) for a while.
	require.Empty(tb, inProgress(d), "maintenance ConfigMap")
	for name, sc := range e.sidecars {
		waitFor(tb, 30*time.Second, "/readyz of "+name, func() (bool, string) {
			code, body := e.call(tb, sc, "", http.MethodGet, "/readyz", "")
			return code == http.StatusOK, body
		})
	}
}

// TestSidecar runs Kubernetes mode end to end: the install applied to a
// real API server, a sidecar per pod with the install's ServiceAccount and
// RBAC, the maintenance state in the install's ConfigMap, and each pod's
// NATS server (an embedded node) fenced by its own sidecar.
func TestSidecar(t *testing.T) {
	e := startScEnv(t)
	t.Run("every sidecar sees every pod", func(t *testing.T) { testSidecarViews(t, e) })
	t.Run("auth", func(t *testing.T) { testSidecarAuth(t, e) })
	t.Run("walkthrough", func(t *testing.T) { testSidecarWalkthrough(t, e) })
	t.Run("events", func(t *testing.T) { testSidecarEvents(t, e) })
	t.Run("dc label", func(t *testing.T) { testSidecarDCLabel(t, e) })
	t.Run("pods follow the pod list", func(t *testing.T) { testSidecarPodList(t, e) })
	t.Run("a restarted node is ready once caught up", func(t *testing.T) { testSidecarRestart(t, e) })
	t.Run("a pre-stop hands off, quiesces and stores nothing; the restarted node is Active", func(t *testing.T) { testSidecarPreStop(t, e) })
	t.Run("API server down: 503 on writes, last state on reads, fences hold", func(t *testing.T) { testSidecarAPIServerDown(t, e) })
	t.Run("a sidecar whose pod the selector misses says so", func(t *testing.T) { testSidecarNotSelected(t, e) })
}

func TestSidecarValidates(t *testing.T) {
	err := (&app.Sidecar{}).Run(context.Background())
	require.Error(t, err)
	for _, field := range []string{"Pod", "Namespace", "ConfigMaps", "Discovery", "Fence", "Dial"} {
		assert.Contains(t, err.Error(), field+" is required")
	}
}

func testSidecarRestart(t *testing.T, e *scEnv) {
	const pod = "nats-2"
	e.requireClean(t)
	sc := e.sidecars[pod]
	require.NoError(t, e.cluster.StopNode(pod))
	waitFor(t, 15*time.Second, "a stopped node is not ready", func() (bool, string) {
		code, body := e.call(t, sc, "", http.MethodGet, "/readyz", "")
		return code == http.StatusServiceUnavailable, body
	})
	code, body := e.call(t, e.sidecars["nats-0"], "", http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusOK, code, "the others stay ready: %s", body)

	e.restartReady(t, sc, pod)
	waitFor(t, 30*time.Second, "no status left behind", func() (bool, string) {
		cm, d := e.stored(t)
		return len(inProgress(d)) == 0, fmt.Sprint(cm.Data)
	})
	e.requireClean(t)
}

func testSidecarViews(t *testing.T, e *scEnv) {
	e.requireClean(t)
	for name, sc := range e.sidecars {
		assert.Equal(t, "dc1", sc.DC(), "%s's dc, from its NATS cluster name", name)
		require.NotNil(t, sc.Reconciler(), name)
		for _, pod := range []string{"nats-0", "nats-1", "nats-2"} {
			var pv maintenance.PodView
			e.decode(t, sc, e.viewer, http.MethodGet, "/pods/"+pod, "", http.StatusOK, &pv)
			assert.Equal(t, "dc1", pv.DC, "%s via %s", pod, name)
			assert.Equal(t, maintenance.PhaseActive, pv.Phase, "%s via %s", pod, name)
			assert.True(t, pv.Raft.Reachable, "%s via %s", pod, name)
			assert.NotZero(t, pv.Raft.Groups, "%s via %s", pod, name)
		}
		// Ready through its own sidecar. Right after the cluster's start a
		// replica may still take a snapshot from its leader (NATS then
		// reports it catching up, and it is rightly not ready meanwhile).
		waitFor(t, 15*time.Second, name+" ready through its own sidecar", func() (bool, string) {
			var ready prober.ProbeResponse
			code, body := e.call(t, sc, "", http.MethodGet, "/readyz?pod="+name, "")
			if code != http.StatusOK {
				return false, body
			}
			require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
			return ready.Pod == name, body
		})

		// Shared sweeps: the sidecar serves its own server's report and
		// reads its peers' from their sidecars, not from their servers.
		var report struct {
			Name   string   `json:"name"`
			Routes []string `json:"routes"`
		}
		e.decode(t, sc, "", http.MethodGet, "/local/report?maxAge=2s", "", http.StatusOK, &report)
		assert.Equal(t, name, report.Name)
		assert.Len(t, report.Routes, 2, "%s's routes", name)
		waitFor(t, 10*time.Second, name+" reads its peers from their sidecars", func() (bool, string) {
			code, body := e.call(t, sc, "", http.MethodGet, "/metrics", "")
			fromSidecars, fromServers := metricValue(body, `prober_peer_reads_total{source="sidecar"}`), metricValue(body, `prober_peer_reads_total{source="server"}`)
			return code == http.StatusOK && fromSidecars > 0 && fromSidecars > 10*fromServers,
				fmt.Sprintf("peer reads from sidecars %v, from servers %v", fromSidecars, fromServers)
		})
	}
}

// metricValue returns the value of the sample named (with its labels) in
// a Prometheus text exposition, -1 when absent.
func metricValue(exposition, sample string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func testSidecarAuth(t *testing.T, e *scEnv) {
	e.requireClean(t)
	sc := e.sidecars["nats-0"]
	tests := []struct {
		name, token, method, path string
		want                      int
	}{
		{"no token", "", http.MethodGet, "/pods/nats-1", http.StatusUnauthorized},
		{"bogus token", "not-a-token", http.MethodGet, "/pods/nats-1", http.StatusUnauthorized},
		{"stranger reads", e.stranger, http.MethodGet, "/pods/nats-1", http.StatusForbidden},
		{"viewer reads", e.viewer, http.MethodGet, "/pods/nats-1", http.StatusOK},
		{"viewer reads the state", e.viewer, http.MethodGet, "/config", http.StatusOK},
		{"viewer may not change", e.viewer, http.MethodPut, "/pods/nats-1", http.StatusForbidden},
		{"viewer may not leave", e.viewer, http.MethodDelete, "/pods/nats-1", http.StatusForbidden},
		{"operator asks (dry run)", e.operator, http.MethodPut, "/pods/nats-1?dryRun=true", http.StatusOK},
		{"probes are open", "", http.MethodGet, "/livez", http.StatusOK},
		{"the server's report, to a NATS pod (loopback here) without a token", "", http.MethodGet, "/local/report", http.StatusOK},
		{"a bad report age", "", http.MethodGet, "/local/report?maxAge=soon", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call(t, sc, tt.token, tt.method, tt.path, "")
			assert.Equal(t, tt.want, code, "%s", body)
			assert.NotContains(t, body, "eyJ", "no token in an answer")
		})
	}
	e.requireClean(t)
}

func testSidecarWalkthrough(t *testing.T, e *scEnv) {
	const pod = "nats-1"
	e.requireClean(t)
	via, other := e.sidecars["nats-0"], e.sidecars["nats-2"]

	// Asked through another pod's sidecar: the state is shared, and the
	// pod's own sidecar does the work.
	begin := time.Now()
	var in prober.PodChange
	e.decode(t, via, e.operator, http.MethodPut, "/pods/"+pod+"?wait=30s", `{"reason":"kernel upgrade"}`, http.StatusOK, &in)
	t.Logf("PUT /pods/%s?wait=30s answered in %.2fs", pod, time.Since(begin).Seconds())
	assert.True(t, in.Changed)
	assert.Equal(t, maintenance.PhaseInMaintenance, in.Phase)
	assert.Equal(t, "system:serviceaccount:"+scNamespace+":operator", in.RequestedBy)

	cm, doc := e.stored(t)
	assert.Contains(t, cm.Data, "pod."+pod)
	assert.Contains(t, cm.Data, "status."+pod)
	require.Contains(t, doc.Pods, pod)
	assert.Equal(t, "kernel upgrade", doc.Pods[pod].Reason)
	require.Contains(t, doc.Status, pod)
	assert.Equal(t, maintenance.PhaseInMaintenance, doc.Status[pod].Phase)
	assert.Equal(t, maintenance.PhaseInMaintenance, e.sidecars[pod].Reconciler().Phase())

	requireFenced(t, e.cluster, pod)
	for name, g := range groupsFromLeaders(e.cluster) {
		assert.NotEqual(t, pod, g.Leader, "group %s", name)
	}
	code, body := e.call(t, e.sidecars[pod], "", http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Contains(t, body, "maintenance")
	code, body = e.call(t, via, "", http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusOK, code, body)

	var pv maintenance.PodView
	e.decode(t, other, e.viewer, http.MethodGet, "/pods/"+pod, "", http.StatusOK, &pv)
	assert.True(t, pv.InMaintenance)
	assert.Equal(t, maintenance.PhaseInMaintenance, pv.Phase)

	// A second pod would cost every group its quorum.
	code, body = e.call(t, other, e.operator, http.MethodPut, "/pods/nats-2", "")
	require.Equal(t, http.StatusConflict, code, body)
	assert.Len(t, violationsByGroup(t, []byte(body)), 3)

	begin = time.Now()
	var out prober.PodChange
	e.decode(t, other, e.operator, http.MethodDelete, "/pods/"+pod+"?wait=60s", "", http.StatusOK, &out)
	t.Logf("DELETE /pods/%s?wait=60s answered in %.2fs", pod, time.Since(begin).Seconds())
	assert.True(t, out.Changed)
	assert.Equal(t, maintenance.PhaseActive, out.Phase)
	requireLinked(t, e.cluster, pod)
	assert.False(t, e.cluster.Node(pod).Quiesced(), "JetStream back on")
	ok, detail := currentEverywhere(e.cluster, pod, demoGroups...)
	assert.True(t, ok, detail)
	cm, d := e.stored(t)
	assert.NotContains(t, cm.Data, "pod."+pod)
	if st, ok := d.Status[pod]; ok {
		assert.Equal(t, maintenance.PhaseActive, st.Phase, "only a give-back report may stay")
	}
	e.requireClean(t)
}

// scLabel sets (or, with dc "", removes) the dc label of pod.
func scLabel(tb testing.TB, admin kubernetes.Interface, pod, dc string) {
	tb.Helper()
	ctx := context.Background()
	p, err := admin.CoreV1().Pods(scNamespace).Get(ctx, pod, metav1.GetOptions{})
	require.NoError(tb, err)
	if dc == "" {
		delete(p.Labels, kube.DefaultDCLabel)
	} else {
		p.Labels[kube.DefaultDCLabel] = dc
	}
	_, err = admin.CoreV1().Pods(scNamespace).Update(ctx, p, metav1.UpdateOptions{})
	require.NoError(tb, err)
}

func testSidecarDCLabel(t *testing.T, e *scEnv) {
	const pod, zone = "nats-2", "zone-b"
	e.requireClean(t)
	via := e.sidecars["nats-0"]
	scLabel(t, e.admin, pod, zone)
	t.Cleanup(func() {
		if _, err := e.admin.CoreV1().Pods(scNamespace).Get(context.Background(), pod, metav1.GetOptions{}); err == nil {
			scLabel(t, e.admin, pod, "")
		}
	})

	waitFor(t, 15*time.Second, "the label makes "+pod+"'s dc "+zone, func() (bool, string) {
		var pv maintenance.PodView
		e.decode(t, via, e.viewer, http.MethodGet, "/pods/"+pod, "", http.StatusOK, &pv)
		got := e.sidecars[pod].DC()
		return pv.DC == zone && got == zone, fmt.Sprintf("API says %q, its sidecar %q", pv.DC, got)
	})
	var members prober.DCView
	e.decode(t, via, e.viewer, http.MethodGet, "/dcs/"+zone, "", http.StatusOK, &members)
	require.Len(t, members.Pods, 1)
	assert.Equal(t, pod, members.Pods[0].Pod)
	var rest prober.DCView
	e.decode(t, via, e.viewer, http.MethodGet, "/dcs/dc1", "", http.StatusOK, &rest)
	assert.Len(t, rest.Pods, 2, "the NATS cluster name still groups the others")
	var raft prober.RaftResponse
	e.decode(t, via, e.viewer, http.MethodGet, "/raft", "", http.StatusOK, &raft)
	n, ok := raft.Node(pod)
	require.True(t, ok)
	assert.Equal(t, "dc1", n.DC, "/raft keeps the NATS cluster name, which routes follow")

	// A dc entry reaches the pod through its restarted reconciler.
	var in prober.DCChange
	e.decode(t, via, e.operator, http.MethodPut, "/dcs/"+zone+"?wait=30s", `{"reason":"zone b patching"}`, http.StatusOK, &in)
	require.Len(t, in.Pods, 1)
	assert.Equal(t, maintenance.PhaseInMaintenance, in.Pods[0].Phase)
	requireFenced(t, e.cluster, pod)
	_, doc := e.stored(t)
	assert.Contains(t, doc.DCs, zone)
	assert.Equal(t, maintenance.PhaseInMaintenance, doc.Status[pod].Phase)

	var out prober.DCChange
	e.decode(t, via, e.operator, http.MethodDelete, "/dcs/"+zone+"?wait=60s", "", http.StatusOK, &out)
	require.Len(t, out.Pods, 1)
	assert.Equal(t, maintenance.PhaseActive, out.Pods[0].Phase)
	requireLinked(t, e.cluster, pod)

	scLabel(t, e.admin, pod, "")
	waitFor(t, 15*time.Second, pod+" back in dc1", func() (bool, string) {
		got := e.sidecars[pod].DC()
		return got == "dc1", "sidecar says " + got
	})
	e.requireClean(t)
}

func testSidecarPodList(t *testing.T, e *scEnv) {
	const pod = "nats-2"
	e.requireClean(t)
	via := e.sidecars["nats-0"]
	ctx := context.Background()
	require.NoError(t, e.admin.CoreV1().Pods(scNamespace).Delete(ctx, pod, metav1.DeleteOptions{}))
	waitFor(t, 15*time.Second, "a deleted pod leaves the view", func() (bool, string) {
		code, body := e.call(t, via, e.viewer, http.MethodGet, "/pods/"+pod, "")
		return code == http.StatusNotFound, body
	})
	waitFor(t, 15*time.Second, "the Pod object is gone", func() (bool, string) {
		_, err := e.admin.CoreV1().Pods(scNamespace).Get(ctx, pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	scPod(t, e.admin, e.cluster.Node(pod), e.reportPorts[pod], nil)
	waitFor(t, 15*time.Second, "a new pod joins the view", func() (bool, string) {
		var pv maintenance.PodView
		code, body := e.call(t, via, e.viewer, http.MethodGet, "/pods/"+pod, "")
		if code != http.StatusOK {
			return false, body
		}
		require.NoError(t, json.Unmarshal([]byte(body), &pv))
		return pv.Raft.Reachable, body
	})
	e.requireClean(t)
}

// testSidecarNotSelected runs a sidecar whose own pod the selector misses:
// it serves, says why it is not ready, and never starts a reconciler.
func testSidecarNotSelected(t *testing.T, e *scEnv) {
	// A selector that finds nothing, not even the sidecar's own pod.
	d2, err := kube.NewPodDiscovery(e.admin.CoreV1().Pods(scNamespace), kube.PodDiscoveryOptions{Selector: mustSelector(t, "app=ghostly"), Logger: zerolog.Nop()})
	require.NoError(t, err)
	running := &app.Sidecar{
		Listen: "127.0.0.1:0", Pod: "ghost", Namespace: scNamespace, ConfigMaps: e.admin.CoreV1(), Discovery: d2,
		Fence: unusedFence{}, Dial: func(string, ...string) (*nats.Conn, error) { return nil, errUnused },
		Logger: zerolog.Nop(),
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := running.Started()
	go func() { done <- running.Run(actx) }()
	defer func() {
		stop()
		assert.NoError(t, <-done)
	}()
	<-started
	waitFor(t, 15*time.Second, "readyz names the cause", func() (bool, string) {
		resp, err := http.Get("http://" + running.Addr() + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "ghost is not among the pods"), string(b)
	})
	assert.Nil(t, running.Reconciler(), "no reconciler without the pod's dc")
}

// errUnused is what unusedFence answers: its sidecar never gets to act.
var errUnused = errors.New("not used by this test")

// unusedFence is the Fence of a sidecar that must never fence: every call
// fails.
type unusedFence struct{}

func (unusedFence) Fenced() (bool, error)             { return false, errUnused }
func (unusedFence) Quiesced() bool                    { return false }
func (unusedFence) Fence(context.Context) error       { return errUnused }
func (unusedFence) Unfence(context.Context) error     { return errUnused }
func (unusedFence) Quiesce(context.Context) error     { return errUnused }
func (unusedFence) Resume(context.Context) error      { return errUnused }
func (unusedFence) MoveClients(context.Context) error { return errUnused }

// mustSelector parses a selector the test knows to be good.
func mustSelector(tb testing.TB, s string) labels.Selector {
	tb.Helper()
	sel, err := kube.ParseSelector(s)
	require.NoError(tb, err)
	return sel
}
