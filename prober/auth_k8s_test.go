package prober_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/kube"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
	"github.com/prober-dev/prober/tools/kubetest"
)

// kubeAuthNamespace is where TestAuthKubernetes creates its objects.
const kubeAuthNamespace = "prober-auth"

// kubeAuth is the RBAC set-up of TestAuthKubernetes on a real API server.
type kubeAuth struct {
	env    *kubetest.Env
	admin  kubernetes.Interface
	tokens map[string]string // ServiceAccount name → token
}

// mustKubeAuth creates the namespace and the ServiceAccounts with their
// RBAC: "prober" as the sidecar (system:auth-delegator, and the ConfigMap
// store's rights), "writer" (get and update on the maintenance ConfigMap),
// "reader" (get only), "nobody" (no binding) and "late" (a valid token
// first used only when the API server is down). Each gets a real token
// from the TokenRequest API, and "vault" one for another audience.
func mustKubeAuth(t *testing.T, ctx context.Context) *kubeAuth {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{})
	admin, err := env.Clientset()
	require.NoError(t, err)
	k := &kubeAuth{env: env, admin: admin, tokens: map[string]string{}}
	ns := kubeAuthNamespace

	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, sa := range []string{"prober", "writer", "reader", "nobody", "late"} {
		_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
		k.tokens[sa] = k.token(t, ctx, sa, nil)
	}
	k.tokens["vault"] = k.token(t, ctx, "writer", []string{"vault"})

	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prober-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prober", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	roles := map[string][]rbacv1.PolicyRule{
		"prober-store": {{APIGroups: []string{""}, Resources: []string{"configmaps"},
			Verbs: []string{"get", "list", "watch", "create", "update"}}},
		"maintenance-writer": {{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{kube.DefaultConfigMapName}, Verbs: []string{"get", "update"}}},
		"maintenance-reader": {{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{kube.DefaultConfigMapName}, Verbs: []string{"get"}}},
	}
	for name, rules := range roles {
		_, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	k.bind(t, ctx, "prober-store", "prober")
	k.bind(t, ctx, "maintenance-writer", "writer")
	k.bind(t, ctx, "maintenance-reader", "reader")
	return k
}

// token asks the TokenRequest API for a token of the ServiceAccount.
func (k *kubeAuth) token(t *testing.T, ctx context.Context, sa string, audiences []string) string {
	t.Helper()
	expiry := int64(3600)
	tr, err := k.admin.CoreV1().ServiceAccounts(kubeAuthNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, tr.Status.Token)
	return tr.Status.Token
}

// bind binds the Role to the ServiceAccount.
func (k *kubeAuth) bind(t *testing.T, ctx context.Context, role, sa string) {
	t.Helper()
	_, err := k.admin.RbacV1().RoleBindings(kubeAuthNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: kubeAuthNamespace}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// clientsetAs is a clientset that authenticates with the ServiceAccount's
// token, as the sidecar does in its pod.
func (k *kubeAuth) clientsetAs(t *testing.T, sa string) kubernetes.Interface {
	t.Helper()
	cfg := k.env.RESTConfig()
	cfg.BearerToken = k.tokens[sa]
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return cs
}

func saUser(sa string) string { return "system:serviceaccount:" + kubeAuthNamespace + ":" + sa }

// TestAuthKubernetes runs the Kubernetes mode of the API against a real
// API server: the sidecar's identity reviews real ServiceAccount tokens and
// asks RBAC about the maintenance ConfigMap, which the ConfigMap store
// writes.
func TestAuthKubernetes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := mustKubeAuth(t, ctx)
	logs := &syncBuffer{}
	log := zerolog.New(logs)

	// The sidecar's wiring: every client is the prober ServiceAccount's.
	cs := k.clientsetAs(t, "prober")
	store := kube.NewConfigMapStore(cs.CoreV1(), kube.ConfigMapStoreOptions{Namespace: kubeAuthNamespace, Logger: log})
	view := staticView(cluster())
	srv := prober.NewServer(prober.Options{
		Addr:    "127.0.0.1:0",
		Service: &maintenance.Service{Store: store, Views: view, Logger: log},
		Views:   view,
		Logger:  log,
		Auth: prober.AuthOptions{
			Authenticator: prober.NewTokenReviewAuthenticator(cs.AuthenticationV1().TokenReviews(),
				prober.TokenReviewOptions{Logger: log}),
			Authorizer: prober.NewSubjectAccessReviewAuthorizer(cs.AuthorizationV1().SubjectAccessReviews(),
				prober.SubjectAccessReviewOptions{Namespace: kubeAuthNamespace, Name: kube.DefaultConfigMapName, Logger: log}),
		},
	})
	require.NoError(t, srv.Open())
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		assert.NoError(t, srv.Close(cctx))
	})
	ts := &testServer{Server: srv, logs: logs}

	// call sends a request from outside the pod (a non-loopback address).
	call := func(t *testing.T, method, path, sa string) (int, http.Header, []byte) {
		t.Helper()
		auth := ""
		switch {
		case sa == "garbage":
			auth = "Bearer not-a-token-at-all-0123456789"
		case sa != "":
			require.Contains(t, k.tokens, sa)
			auth = "Bearer " + k.tokens[sa]
		}
		rec := serve(ts, method, path, remoteAddr, auth, "")
		return rec.Code, rec.Header(), rec.Body.Bytes()
	}
	stored := func(t *testing.T, pod string) (maintenance.Entry, bool) {
		t.Helper()
		cm, err := k.admin.CoreV1().ConfigMaps(kubeAuthNamespace).Get(ctx, kube.DefaultConfigMapName, metav1.GetOptions{})
		require.NoError(t, err)
		raw, ok := cm.Data["pod."+pod]
		if !ok {
			return maintenance.Entry{}, false
		}
		var e maintenance.Entry
		require.NoError(t, json.Unmarshal([]byte(raw), &e), "pod.%s: %s", pod, raw)
		return e, true
	}
	const forbiddenUpdate = "may not update configmap " + kubeAuthNamespace + "/" + kube.DefaultConfigMapName

	for _, tc := range []struct {
		name         string
		method, path string
		sa           string // "" no token, "garbage" a made-up one
		status       int
		code         string
		message      string // a part of the error message
		check        func(t *testing.T, body []byte)
	}{
		{name: "no token", method: "GET", path: "/pods/n0", status: 401, code: maintenance.EUnauthorized},
		{name: "garbage token", method: "GET", path: "/pods/n0", sa: "garbage", status: 401,
			code: maintenance.EUnauthorized, message: "Unauthorized"},
		{name: "token for another audience", method: "GET", path: "/pods/n0", sa: "vault", status: 401,
			code: maintenance.EUnauthorized, message: "Unauthorized"},
		{name: "no binding may not get", method: "GET", path: "/pods/n0", sa: "nobody", status: 403,
			code: maintenance.EForbidden, message: "may not get configmap " + kubeAuthNamespace + "/" + kube.DefaultConfigMapName},
		{name: "reader gets", method: "GET", path: "/pods/n0", sa: "reader", status: 200},
		{name: "reader reads the config", method: "GET", path: "/config", sa: "reader", status: 200},
		{name: "reader may not put", method: "PUT", path: "/pods/n0", sa: "reader", status: 403,
			code: maintenance.EForbidden, message: forbiddenUpdate},
		{name: "reader may not delete", method: "DELETE", path: "/pods/n0", sa: "reader", status: 403,
			code: maintenance.EForbidden, message: forbiddenUpdate},
		{name: "writer puts", method: "PUT", path: "/pods/n0", sa: "writer", status: 202,
			check: func(t *testing.T, body []byte) {
				var pv maintenance.PodView
				require.NoError(t, json.Unmarshal(body, &pv))
				assert.Equal(t, saUser("writer"), pv.RequestedBy)
				e, ok := stored(t, "n0")
				require.True(t, ok, "pod.n0 in the ConfigMap")
				assert.Equal(t, saUser("writer"), e.RequestedBy)
			}},
		{name: "reader sees who asked", method: "GET", path: "/pods/n0", sa: "reader", status: 200,
			check: func(t *testing.T, body []byte) {
				var pv maintenance.PodView
				require.NoError(t, json.Unmarshal(body, &pv))
				assert.True(t, pv.InMaintenance)
				assert.Equal(t, saUser("writer"), pv.RequestedBy)
			}},
		// 200: with no reconciler running, the pod never left Active.
		{name: "writer deletes", method: "DELETE", path: "/pods/n0", sa: "writer", status: 200,
			check: func(t *testing.T, _ []byte) {
				_, ok := stored(t, "n0")
				assert.False(t, ok, "pod.n0 removed from the ConfigMap")
			}},
		{name: "livez open", method: "GET", path: "/livez", status: 200},
		{name: "readyz open", method: "GET", path: "/readyz", status: 200},
		{name: "metrics open", method: "GET", path: "/metrics", status: 200},
		{name: "openapi open", method: "GET", path: "/openapi.json", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := call(t, tc.method, tc.path, tc.sa)
			require.Equal(t, tc.status, status, "body: %s", body)
			if tc.code != "" {
				e := decodeError(t, body)
				assert.Equal(t, tc.code, e.Code)
				assert.Contains(t, e.Message, tc.message)
			}
			if status == http.StatusUnauthorized {
				assert.True(t, strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer"), "WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}

	t.Run("loopback over TCP is trusted and records the token's user", func(t *testing.T) {
		base := "http://" + srv.Addr()
		do := func(method, path, token string) (int, []byte) {
			req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
			require.NoError(t, err)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, b
		}
		status, body := do("GET", "/pods/n1", "")
		require.Equal(t, 200, status, "%s", body)
		status, body = do("PUT", "/pods/n1", k.tokens["reader"])
		require.Equal(t, 202, status, "loopback is trusted, the reader's token only names the caller: %s", body)
		e, ok := stored(t, "n1")
		require.True(t, ok)
		assert.Equal(t, saUser("reader"), e.RequestedBy)
		status, body = do("DELETE", "/pods/n1", "")
		require.Equal(t, 200, status, "%s", body)
		status, body = do("GET", "/pods/n1", "not-a-token-at-all-0123456789")
		require.Equal(t, 401, status, "a bad token is refused on loopback too: %s", body)
	})

	t.Run("a new binding takes effect within the deny TTL", func(t *testing.T) {
		status, _, body := call(t, "GET", "/raft", "nobody")
		require.Equal(t, 403, status, "%s", body)
		k.bind(t, ctx, "maintenance-reader", "nobody")
		start := time.Now()
		require.Eventually(t, func() bool {
			status, _, _ := call(t, "GET", "/raft", "nobody")
			return status == 200
		}, 3*prober.DefaultAuthDenyTTL, 50*time.Millisecond)
		t.Logf("binding effective after %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("the sidecar without system:auth-delegator is misconfigured, not unavailable", func(t *testing.T) {
		a := prober.NewTokenReviewAuthenticator(k.clientsetAs(t, "writer").AuthenticationV1().TokenReviews(), prober.TokenReviewOptions{})
		_, _, err := a.Authenticate(ctx, k.tokens["reader"])
		require.Error(t, err)
		assert.True(t, apierrors.IsForbidden(err), "%v", err)
		assert.False(t, errors.Is(err, prober.ErrAuthUnavailable), "%v", err)
		assert.NotContains(t, err.Error(), k.tokens["reader"])
	})

	t.Run("latency", func(t *testing.T) {
		const n = 10
		fresh := make([]string, n)
		for i := range fresh {
			fresh[i] = k.token(t, ctx, "reader", nil)
		}
		measure := func(tokens []string) time.Duration {
			start := time.Now()
			for _, tok := range tokens {
				rec := serve(ts, "GET", "/raft", remoteAddr, "Bearer "+tok, "")
				require.Equal(t, 200, rec.Code, "%s", rec.Body)
			}
			return time.Since(start) / time.Duration(len(tokens))
		}
		reviewed := measure(fresh)
		cached := measure(fresh)
		t.Logf("GET /raft per request: %s with a TokenReview (SubjectAccessReview cached), %s from the caches",
			reviewed.Round(time.Microsecond), cached.Round(time.Microsecond))
		assert.Less(t, cached, reviewed, "the cache answers faster than the API server")
	})

	t.Run("API server down: cached decisions serve, new tokens get 503", func(t *testing.T) {
		status, _, body := call(t, "GET", "/raft", "reader")
		require.Equal(t, 200, status, "%s", body)
		require.NoError(t, k.env.StopAPIServer())
		status, _, body = call(t, "GET", "/raft", "reader")
		assert.Equal(t, 200, status, "answered from the caches: %s", body)
		status, hdr, body := call(t, "GET", "/raft", "late")
		require.Equal(t, 503, status, "%s", body)
		assert.Equal(t, maintenance.EUnavailable, decodeError(t, body).Code)
		assert.Equal(t, "1", hdr.Get("Retry-After"))
	})

	t.Run("no token in the logs", func(t *testing.T) {
		out := logs.String()
		require.Contains(t, out, "unauthorized: token rejected", "the failures are logged")
		require.Contains(t, out, "token review: not authenticated")
		require.Contains(t, out, "authentication unavailable")
		for sa, tok := range k.tokens {
			assert.NotContains(t, out, tok, "token of %s", sa)
			// A JWT's signature alone would be a leak too.
			assert.NotContains(t, out, tok[strings.LastIndex(tok, ".")+1:], "signature of %s's token", sa)
		}
		assert.NotContains(t, out, "not-a-token-at-all-0123456789")
	})
}
