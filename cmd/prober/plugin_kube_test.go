package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/prober-dev/prober/tools/kubetest"
)

// TestPluginAPIServer runs kubectl prober against a real kube-apiserver:
// it reads the kubeconfig, picks the Ready pod of the selector, and asks
// the API server for a port-forward, which fails (there is no kubelet) with
// one clear line naming the pod; so do a missing namespace, no pod to
// forward to, a missing context and RBAC.
func TestPluginAPIServer(t *testing.T) {
	ctx := context.Background()
	env := kubetest.Start(t, kubetest.Options{})
	admin, err := env.Clientset()
	require.NoError(t, err)
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nats"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.CoreV1().ServiceAccounts("nats").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	createPod(t, admin, natsPod("nats-0", corev1.PodRunning, false))
	createPod(t, admin, natsPod("nats-1", corev1.PodRunning, true))
	spare := natsPod("nats-2", corev1.PodPending, false)
	spare.Labels["role"] = "spare"
	createPod(t, admin, spare)
	kubeconfig := withImpersonation(t, env.Kubeconfig, "bob")

	plugin := func(args ...string) result {
		t.Helper()
		begin := time.Now()
		var r result
		var out, errOut strings.Builder
		r.code = Plugin(append([]string{"--kubeconfig", kubeconfig}, args...), &out, &errOut)
		r.stdout, r.stderr = out.String(), errOut.String()
		assert.Less(t, time.Since(begin), forwardTimeout, "an answer, not a timeout: %s", r)
		assert.Empty(t, r.stdout, r)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r)
		return r
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // its start
	}{
		{"the Ready pod, and no kubelet to forward to", []string{"-n", "nats", "status"}, exitFailed,
			"kubectl-prober: port-forward to nats/nats-1:8889: "},
		{"--pod", []string{"-n", "nats", "--pod", "nats-0", "maintenance", "on", "nats-1", "--reason", "test"}, exitFailed,
			"kubectl-prober: port-forward to nats/nats-0:8889: "},
		{"--pod not Running", []string{"--namespace=nats", "raft", "--pod=nats-2"}, exitFailed,
			"kubectl-prober: pod nats/nats-2 is Pending, not Running: nothing to forward to\n"},
		{"no Ready or Running pod", []string{"-n", "nats", "-l", "role=spare", "raft"}, exitFailed,
			`kubectl-prober: no Ready or Running pod matches role=spare in namespace "nats": nats-2 Pending` + "\n"},
		{"no pod", []string{"-n", "nats", "--selector", "app=redis", "status"}, exitFailed,
			`kubectl-prober: no pod matches app=redis in namespace "nats" (see -n and --selector)` + "\n"},
		{"the context's namespace has none", []string{"status"}, exitFailed,
			`kubectl-prober: no pod matches app.kubernetes.io/name=nats in namespace "default" (see -n and --selector)` + "\n"},
		{"no namespace", []string{"-n", "natz", "rollout", "status"}, exitFailed,
			`kubectl-prober: namespace "natz" not found (see -n)` + "\n"},
		{"no context", []string{"--context", "prod", "-n", "nats", "status"}, exitFailed,
			`kubectl-prober: kubeconfig: context "prod" does not exist` + "\n"},
		{"RBAC: bob may not list pods", []string{"--context", "bob", "-n", "nats", "status"}, exitFailed,
			`kubectl-prober: list pods in namespace "nats": pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "nats"` + "\n"},
		{"a usage error first", []string{"-n", "nats", "status", "--server", "http://x"}, exitUsage,
			"kubectl-prober: --server: kubectl prober talks to the port-forward it opens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := plugin(tc.args...)
			assert.Equal(t, tc.code, r.code, r)
			assert.True(t, strings.HasPrefix(r.stderr, tc.stderr), "want %q\n%s", tc.stderr, r)
			t.Logf("%v: %s", tc.args, r.stderr)
		})
	}

	t.Run("RBAC: bob may find the pod, not forward to it", func(t *testing.T) {
		_, err := admin.RbacV1().Roles("nats").Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = admin.RbacV1().RoleBindings("nats").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "bob-pod-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		// RBAC takes effect once the authorizer's informers have it.
		var r result
		poll(t, 30*time.Second, "bob may list pods", func() (bool, string) {
			r = plugin("--context", "bob", "-n", "nats", "status")
			return !strings.Contains(r.stderr, "cannot list"), r.String()
		})
		assert.Equal(t, exitFailed, r.code, r)
		assert.True(t, strings.HasPrefix(r.stderr, "kubectl-prober: port-forward to nats/nats-1:8889: "), r)
		// kubectl's own words: a websocket forward asks for get (and, as
		// the API server's feature gate has it, create) pods/portforward.
		assert.Regexp(t, `User "bob" cannot (get|create) resource "pods/portforward" in API group "" in the namespace "nats"\n$`, r.stderr, r)
	})
}

// createPod creates p and sets its status (phase, conditions) as a kubelet
// would; its node does not exist.
func createPod(t *testing.T, cs kubernetes.Interface, p *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	status := p.Status
	p.Spec = corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "nats", Image: "nats"}}}
	created, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	require.NoError(t, err)
	created.Status = status
	_, err = cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// withImpersonation writes a copy of the kubeconfig at path with a context
// "user" that impersonates that user, and returns the copy's path.
func withImpersonation(t *testing.T, path, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	require.NoError(t, err)
	cur := cfg.Contexts[cfg.CurrentContext]
	require.NotNil(t, cur, "current context %q", cfg.CurrentContext)
	auth := *cfg.AuthInfos[cur.AuthInfo]
	auth.Impersonate = user
	cfg.AuthInfos[user] = &auth
	ctx := *cur
	ctx.AuthInfo = user
	cfg.Contexts[user] = &ctx
	out := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, out))
	return out
}
