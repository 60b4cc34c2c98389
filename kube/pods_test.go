package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/tools/kubetest"
)

// TestParseSelector checks the selectors a discovery accepts.
func TestParseSelector(t *testing.T) {
	tests := []struct {
		selector string
		wantErr  bool
	}{
		{"app.kubernetes.io/name=nats", false},
		{"app=nats,tier in (a,b)", false},
		{"", true},
		{"app in (", true},
		{"!!", true},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			_, err := ParseSelector(tt.selector)
			if tt.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
	_, err := NewPodDiscovery(nil, PodDiscoveryOptions{})
	assert.Error(t, err, "a discovery needs a selector")
	_, err = NewPodDiscovery(nil, PodDiscoveryOptions{Selector: labels.Everything()})
	assert.Error(t, err, "a discovery must not select every pod")
}

// discPod is a pod for TestPodDiscovery: its labels, annotations, IP and
// DNS name.
type discPod struct {
	name        string
	labels      map[string]string
	annotations map[string]string
	ip          string
	subdomain   string
}

// TestPodDiscovery follows pods on a real API server: which pods become
// peers, at which URLs, with which dc, and how changes arrive.
func TestPodDiscovery(t *testing.T) {
	const ns = "disc"
	ctx := context.Background()
	kube := kubetest.Start(t, kubetest.Options{})
	admin, err := kube.Clientset()
	require.NoError(t, err)
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	pods := admin.CoreV1().Pods(ns)

	natsLabels := map[string]string{"app": "nats"}
	put := func(p discPod) {
		t.Helper()
		obj, err := pods.Get(ctx, p.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj, err = pods.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: p.name},
				Spec: corev1.PodSpec{
					Hostname: p.name, Subdomain: p.subdomain,
					Containers: []corev1.Container{{Name: "nats", Image: "nats"}},
				},
			}, metav1.CreateOptions{})
		}
		require.NoError(t, err)
		obj.Labels, obj.Annotations = p.labels, p.annotations
		obj, err = pods.Update(ctx, obj, metav1.UpdateOptions{})
		require.NoError(t, err)
		obj.Status.PodIP = p.ip
		obj.Status.PodIPs = nil
		if p.ip != "" {
			obj.Status.PodIPs = []corev1.PodIP{{IP: p.ip}}
		}
		_, err = pods.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	withLabel := func(k, v string) map[string]string { return map[string]string{"app": "nats", k: v} }

	// Before the discovery starts: its first list finds these.
	put(discPod{name: "a", labels: natsLabels, ip: "10.0.0.1", annotations: map[string]string{MonitorPortAnnotation: "9000"}})
	put(discPod{name: "b", labels: natsLabels, subdomain: "nats-headless"})
	put(discPod{name: "c", labels: natsLabels})
	put(discPod{name: "d", labels: map[string]string{"app": "other"}, ip: "10.0.0.4"})
	put(discPod{name: "e", labels: withLabel(DefaultDCLabel, "zone-a"), ip: "10.0.0.5",
		annotations: map[string]string{MonitorPortAnnotation: "x", ClientPortAnnotation: "5222"}})
	put(discPod{name: "f", labels: natsLabels, ip: "fd00::6"})

	disc, err := NewPodDiscovery(pods, PodDiscoveryOptions{Selector: mustSelector(t, "app=nats"), Logger: zerolog.Nop()})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- disc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	select {
	case <-disc.Synced():
	case <-time.After(30 * time.Second):
		require.FailNow(t, "discovery did not sync")
	}

	want := []Peer{
		{Name: "a", IP: "10.0.0.1", MonitorURL: "http://10.0.0.1:9000", ClientURL: "nats://10.0.0.1:4222"},
		{Name: "b", MonitorURL: "http://b.nats-headless.disc.svc:8222"},
		{Name: "e", IP: "10.0.0.5", MonitorURL: "http://10.0.0.5:8222", ClientURL: "nats://10.0.0.5:5222", DC: "zone-a"},
		{Name: "f", IP: "fd00::6", MonitorURL: "http://[fd00::6]:8222", ClientURL: "nats://[fd00::6]:4222"},
	}
	assert.Equal(t, want, disc.Peers(), "first list")
	assert.Equal(t, []natsraft.Endpoint{
		{Name: "a", MonitorURL: "http://10.0.0.1:9000"},
		{Name: "b", MonitorURL: "http://b.nats-headless.disc.svc:8222"},
		{Name: "e", DC: "zone-a", MonitorURL: "http://10.0.0.5:8222"},
		{Name: "f", MonitorURL: "http://[fd00::6]:8222"},
	}, disc.Endpoints())
	assert.Equal(t, map[string]string{"a": "nats://10.0.0.1:4222", "e": "nats://10.0.0.5:5222", "f": "nats://[fd00::6]:4222"}, disc.ClientURLs())
	assert.Equal(t, map[string]string{"e": "zone-a"}, disc.DCs())

	// Changes arrive through the watch, one at a time.
	changes := []struct {
		name   string
		change func()
		check  func(map[string]Peer) bool
	}{
		{"a new IP", func() {
			put(discPod{name: "a", labels: natsLabels, ip: "10.0.1.1", annotations: map[string]string{MonitorPortAnnotation: "9000"}})
		}, func(m map[string]Peer) bool { return m["a"].MonitorURL == "http://10.0.1.1:9000" }},
		{"b gets an IP", func() { put(discPod{name: "b", labels: natsLabels, subdomain: "nats-headless", ip: "10.0.0.2"}) },
			func(m map[string]Peer) bool { return m["b"].ClientURL == "nats://10.0.0.2:4222" }},
		{"d gets the label", func() { put(discPod{name: "d", labels: natsLabels, ip: "10.0.0.4"}) },
			func(m map[string]Peer) bool { _, ok := m["d"]; return ok }},
		{"e loses its dc label", func() { put(discPod{name: "e", labels: natsLabels, ip: "10.0.0.5"}) },
			func(m map[string]Peer) bool {
				return m["e"].DC == "" && m["e"].ClientURL == "nats://10.0.0.5:4222"
			}},
		{"f loses the label", func() { put(discPod{name: "f", labels: map[string]string{"app": "other"}, ip: "fd00::6"}) },
			func(m map[string]Peer) bool { _, ok := m["f"]; return !ok }},
		{"a is deleted", func() { require.NoError(t, pods.Delete(ctx, "a", metav1.DeleteOptions{})) },
			func(m map[string]Peer) bool { _, ok := m["a"]; return !ok }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			// Drain a notification left over from before.
			select {
			case <-disc.Changed():
			default:
			}
			c.change()
			select {
			case <-disc.Changed():
			case <-time.After(15 * time.Second):
				require.FailNow(t, "no change notified")
			}
			waitFor(t, 15*time.Second, c.name, func() (bool, string) {
				m := map[string]Peer{}
				for _, p := range disc.Peers() {
					m[p.Name] = p
				}
				return c.check(m), fmt.Sprintf("%+v", disc.Peers())
			})
		})
	}
}

// waitFor polls cond every 50ms until it holds; past timeout the test fails
// with what, and the last detail cond gave.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	begin := time.Now()
	deadline := begin.Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return time.Since(begin)
		}
		if time.Now().After(deadline) {
			require.FailNow(tb, "condition not met", "%s: not within %s; last: %s", what, timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustSelector parses a selector the test knows to be good.
func mustSelector(tb testing.TB, s string) labels.Selector {
	tb.Helper()
	sel, err := ParseSelector(s)
	require.NoError(tb, err)
	return sel
}
