package kube

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/maintenance/storetest"
	"github.com/prober-dev/prober/tools/kubetest"
)

// cmSoakEnv sets how long TestConfigMapStoreCAS races its writers: a Go
// duration, default cmSoakDefault; the 60 s soak is PROBER_CM_SOAK=60s.
const (
	cmSoakEnv     = "PROBER_CM_SOAK"
	cmSoakDefault = 3 * time.Second
	cmNamespace   = "default"
)

// cmEnv is a running API server and a way to make stores on it.
type cmEnv struct {
	*kubetest.Env
}

func cmStart(t *testing.T) *cmEnv {
	t.Helper()
	return &cmEnv{kubetest.Start(t, kubetest.Options{})}
}

// core returns a fresh typed client, so that two stores do not share one.
func (e *cmEnv) core(t *testing.T) corev1client.CoreV1Interface {
	t.Helper()
	cs, err := e.Clientset()
	require.NoError(t, err)
	return cs.CoreV1()
}

// store returns a store on ConfigMap name with its own client.
func (e *cmEnv) store(t *testing.T, name string, o ConfigMapStoreOptions) *ConfigMapStore {
	t.Helper()
	o.Namespace, o.Name, o.Logger = cmNamespace, name, zerolog.Nop()
	return NewConfigMapStore(e.core(t), o)
}

// cmKeys returns the keys of m.
func cmKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// cmSetPod returns an Update function that sets pod's entry to reason.
func cmSetPod(pod, reason string) func(*maintenance.Document) error {
	return func(d *maintenance.Document) error {
		d.Pods[pod] = maintenance.Entry{Reason: reason, Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		return nil
	}
}

// TestConfigMapStoreContract runs the Store contract on ConfigMaps of a
// real API server, each case on a ConfigMap of its own.
func TestConfigMapStoreContract(t *testing.T) {
	env := cmStart(t)
	n := 0
	storetest.Run(t, func(t *testing.T) func() maintenance.Store {
		n++
		name := fmt.Sprintf("contract-%d", n)
		return func() maintenance.Store { return env.store(t, name, ConfigMapStoreOptions{}) }
	})
}

func TestConfigMapStore(t *testing.T) {
	env := cmStart(t)
	ctx := context.Background()
	raw := env.core(t).ConfigMaps(cmNamespace)

	tests := []struct {
		name string
		run  func(t *testing.T, name string)
	}{
		{"missing ConfigMap reads as an empty document", func(t *testing.T, name string) {
			d, err := env.store(t, name, ConfigMapStoreOptions{}).Get(ctx)
			require.NoError(t, err)
			assert.Empty(t, d.Pods)
			assert.Empty(t, d.DCs)
			assert.Empty(t, d.Status)
			assert.Empty(t, d.ResourceVersion)
			_, err = raw.Get(ctx, name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "Get must not create the ConfigMap: %v", err)
		}},
		{"update creates the ConfigMap, one key per entry", func(t *testing.T, name string) {
			s := env.store(t, name, ConfigMapStoreOptions{})
			d, err := s.Update(ctx, func(d *maintenance.Document) error {
				d.Pods["nats-0"] = maintenance.Entry{Reason: "kernel upgrade", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
				d.Status["nats-0"] = maintenance.Status{Phase: maintenance.PhaseRequested}
				return nil
			})
			require.NoError(t, err)
			cm, err := raw.Get(ctx, name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, cm.ResourceVersion, d.ResourceVersion)
			assert.ElementsMatch(t, []string{"pod.nats-0", "status.nats-0"}, cmKeys(cm.Data))
			assert.JSONEq(t, `{"reason":"kernel upgrade","since":"2026-01-02T03:04:05Z"}`, cm.Data["pod.nats-0"])
			got, err := s.Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, d, got)
		}},
		{"an unchanged document is not written", func(t *testing.T, name string) {
			s := env.store(t, name, ConfigMapStoreOptions{})
			first, err := s.Update(ctx, cmSetPod("nats-1", "r"))
			require.NoError(t, err)
			second, err := s.Update(ctx, cmSetPod("nats-1", "r"))
			require.NoError(t, err)
			assert.Equal(t, first.ResourceVersion, second.ResourceVersion)
			cm, err := raw.Get(ctx, name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, first.ResourceVersion, cm.ResourceVersion)
			empty := env.store(t, name+"-none", ConfigMapStoreOptions{})
			_, err = empty.Update(ctx, func(*maintenance.Document) error { return nil })
			require.NoError(t, err)
			_, err = raw.Get(ctx, name+"-none", metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "a no-op must not create the ConfigMap: %v", err)
		}},
		{"an error from fn is returned as is and nothing is written", func(t *testing.T, name string) {
			s := env.store(t, name, ConfigMapStoreOptions{})
			before, err := s.Update(ctx, cmSetPod("nats-2", "r"))
			require.NoError(t, err)
			boom := maintenance.Errorf(maintenance.EUnsafe, "boom")
			_, err = s.Update(ctx, func(d *maintenance.Document) error {
				delete(d.Pods, "nats-2")
				return boom
			})
			assert.Same(t, boom, err)
			after, err := s.Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, before, after)
		}},
		{"a name that is no ConfigMap key is EInvalid", func(t *testing.T, name string) {
			_, err := env.store(t, name, ConfigMapStoreOptions{}).Update(ctx, cmSetPod("no/slash", "r"))
			assert.Equal(t, maintenance.EInvalid, maintenance.ErrorCode(err), "%v", err)
		}},
		{"a document over 1 MiB is ETooLarge", func(t *testing.T, name string) {
			_, err := env.store(t, name, ConfigMapStoreOptions{}).Update(ctx, cmSetPod("big", strings.Repeat("x", 1<<20)))
			assert.Equal(t, maintenance.ETooLarge, maintenance.ErrorCode(err), "%v", err)
		}},
		{"a ConfigMap that does not decode is maintenance.EUnavailable naming the key and is not overwritten", func(t *testing.T, name string) {
			s := env.store(t, name, ConfigMapStoreOptions{})
			_, err := s.Update(ctx, cmSetPod("nats-0", "known good"))
			require.NoError(t, err)
			cm, err := raw.Get(ctx, name, metav1.GetOptions{})
			require.NoError(t, err)
			cm.Data = map[string]string{"bogus": "{}"}
			_, err = raw.Update(ctx, cm, metav1.UpdateOptions{})
			require.NoError(t, err)
			_, err = s.Get(ctx)
			assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v (never the last known document)", err)
			assert.Contains(t, cmMessage(err), `stored maintenance state is unreadable`)
			assert.Contains(t, cmMessage(err), `key "bogus"`)
			_, err = s.Update(ctx, cmSetPod("nats-3", "r"))
			assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
			assert.Contains(t, cmMessage(err), `key "bogus"`)
			cm, err = raw.Get(ctx, name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"bogus": "{}"}, cm.Data)
		}},
		{"labels, annotations and binaryData of others are kept", func(t *testing.T, name string) {
			_, err := raw.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "a"},
					Annotations: map[string]string{"note": "n"}},
				BinaryData: map[string][]byte{"blob": {1, 2}},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
			_, err = env.store(t, name, ConfigMapStoreOptions{}).Update(ctx, cmSetPod("nats-4", "r"))
			require.NoError(t, err)
			cm, err := raw.Get(ctx, name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, "a", cm.Labels["team"])
			assert.Equal(t, "n", cm.Annotations["note"])
			assert.Equal(t, []byte{1, 2}, cm.BinaryData["blob"])
			assert.Contains(t, cm.Data, "pod.nats-4")
		}},
		{"stores racing to create the ConfigMap all land", func(t *testing.T, name string) {
			const n = 8
			stores := make([]*ConfigMapStore, n)
			for i := range stores {
				stores[i] = env.store(t, name, ConfigMapStoreOptions{})
			}
			start := make(chan struct{})
			errs := make(chan error, n)
			for i, s := range stores {
				go func() {
					<-start
					_, err := s.Update(ctx, cmSetPod(fmt.Sprintf("p%d", i), "r"))
					errs <- err
				}()
			}
			close(start)
			for range n {
				require.NoError(t, <-errs)
			}
			d, err := stores[0].Get(ctx)
			require.NoError(t, err)
			assert.Len(t, d.Pods, n)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, fmt.Sprintf("cm-%d", i))
		})
	}
}

// TestConfigMapStoreCAS races writers of two stores, each with its own
// client, on one ConfigMap and checks that the stored document equals a
// model of the acknowledged operations: no update is lost. A store runs its
// own Updates one at a time, so the races that the resourceVersion must
// settle are those between the two stores, as between two sidecars; the
// test also checks that such conflicts really happened.
//
// Each goroutine toggles its own pod entry (PUT when absent, DELETE when
// present, the value carrying a sequence number) and increments counters
// shared by all (dc entries whose reason is a count). A lost update shows
// as a wrong own entry or a counter short of the acknowledged increments.
func TestConfigMapStoreCAS(t *testing.T) {
	soak := cmSoakDefault
	if v := os.Getenv(cmSoakEnv); v != "" {
		var err error
		soak, err = time.ParseDuration(v)
		require.NoError(t, err, "%s", cmSoakEnv)
	}
	env := cmStart(t)
	ctx := context.Background()
	const (
		workers = 50
		shared  = 4
		name    = "cas"
	)
	stores := []*ConfigMapStore{
		env.store(t, name, ConfigMapStoreOptions{}),
		env.store(t, name, ConfigMapStoreOptions{}),
	}

	type model struct {
		own     *maintenance.Entry // nil when the pod entry is deleted
		counted [shared]int
		ops     int
		gaveUp  int
	}
	models := make([]model, workers)
	stop := time.Now().Add(soak)
	var wg sync.WaitGroup
	var (
		failOnce sync.Once
		failed   error
	)
	began := time.Now()
	for w := range workers {
		wg.Go(func() {
			s := stores[w%len(stores)]
			m := &models[w]
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			pod := fmt.Sprintf("w%d", w)
			for seq := 0; time.Now().Before(stop); seq++ {
				var fn func(*maintenance.Document) error
				var ack func()
				if rng.IntN(2) == 0 {
					var want *maintenance.Entry
					if m.own == nil {
						want = &maintenance.Entry{Reason: strconv.Itoa(seq), Since: time.Unix(int64(seq), 0).UTC()}
					}
					fn = func(d *maintenance.Document) error {
						if want == nil {
							delete(d.Pods, pod)
						} else {
							d.Pods[pod] = *want
						}
						return nil
					}
					ack = func() { m.own = want }
				} else {
					k := rng.IntN(shared)
					dc := fmt.Sprintf("shared-%d", k)
					fn = func(d *maintenance.Document) error { return storetest.Increment(d.DCs, dc) }
					ack = func() { m.counted[k]++ }
				}
				_, err := s.Update(ctx, fn)
				switch {
				case err == nil:
					ack()
					m.ops++
				case maintenance.ErrorCode(err) == maintenance.EConflict:
					// Refused by the API server every time: not applied,
					// so not acknowledged.
					m.gaveUp++
				default:
					failOnce.Do(func() { failed = fmt.Errorf("worker %d: %w", w, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	require.NoError(t, failed)

	d, err := env.store(t, name, ConfigMapStoreOptions{}).Get(ctx)
	require.NoError(t, err)
	var ops, gaveUp int
	var counted [shared]int
	for w, m := range models {
		ops += m.ops
		gaveUp += m.gaveUp
		for k, c := range m.counted {
			counted[k] += c
		}
		got, ok := d.Pods[fmt.Sprintf("w%d", w)]
		if m.own == nil {
			assert.False(t, ok, "worker %d: own entry should be deleted, is %+v", w, got)
		} else if assert.True(t, ok, "worker %d: own entry lost", w) {
			assert.Equal(t, *m.own, got, "worker %d", w)
		}
	}
	assert.Len(t, d.Pods, func() int {
		n := 0
		for _, m := range models {
			if m.own != nil {
				n++
			}
		}
		return n
	}())
	for k, c := range counted {
		assert.Equal(t, strconv.Itoa(c), d.DCs[fmt.Sprintf("shared-%d", k)].Reason, "counter %d", k)
	}
	conflicts := stores[0].Conflicts() + stores[1].Conflicts()
	t.Logf("%d workers, %s: %d acknowledged updates (%.0f/s), %d conflicts retried, %d gave up",
		workers, elapsed.Round(time.Millisecond), ops, float64(ops)/elapsed.Seconds(), conflicts, gaveUp)
	assert.Positive(t, ops)
	assert.Positive(t, conflicts, "the writers never raced: the test proves nothing")
	// Giving up (maintenance.EConflict after every attempt lost its race) is correct,
	// the model counts only acknowledged updates, but must stay the
	// exception even at this contention.
	assert.Less(t, gaveUp, ops, "most updates should get through")
}

// cmCountingClient counts the watch requests a store makes.
type cmCountingClient struct {
	corev1client.ConfigMapsGetter
	watches, gets *atomic.Int64
}

func (c cmCountingClient) ConfigMaps(ns string) corev1client.ConfigMapInterface {
	return cmCountingConfigMaps{c.ConfigMapsGetter.ConfigMaps(ns), c.watches, c.gets}
}

type cmCountingConfigMaps struct {
	corev1client.ConfigMapInterface
	watches, gets *atomic.Int64
}

func (c cmCountingConfigMaps) Get(ctx context.Context, name string, o metav1.GetOptions) (*corev1.ConfigMap, error) {
	if c.gets != nil {
		c.gets.Add(1)
	}
	return c.ConfigMapInterface.Get(ctx, name, o)
}

func (c cmCountingConfigMaps) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	c.watches.Add(1)
	return c.ConfigMapInterface.Watch(ctx, o)
}

func TestConfigMapStoreWatch(t *testing.T) {
	env := cmStart(t)
	ctx := context.Background()
	const name = "watched"
	var watches, gets atomic.Int64
	watcher := NewConfigMapStore(cmCountingClient{env.core(t), &watches, &gets}, ConfigMapStoreOptions{
		Namespace: cmNamespace, Name: name, WatchTimeout: time.Second, Logger: zerolog.Nop(),
	})
	writer := env.store(t, name, ConfigMapStoreOptions{})
	raw := env.core(t).ConfigMaps(cmNamespace)

	wctx, cancel := context.WithCancel(ctx)
	ch, err := watcher.Watch(wctx)
	require.NoError(t, err)
	// The watcher had never known the document: its first list notifies.
	got, ok := storetest.Receive(ch, 30*time.Second)
	require.True(t, got && ok, "first list should notify")

	steps := []struct {
		name   string
		change func(t *testing.T)
		want   func(t *testing.T, d *maintenance.Document)
	}{
		{"another store creates the ConfigMap", func(t *testing.T) {
			_, err := writer.Update(ctx, cmSetPod("nats-0", "first"))
			require.NoError(t, err)
		}, func(t *testing.T, d *maintenance.Document) {
			assert.Equal(t, "first", d.Pods["nats-0"].Reason)
		}},
		{"another store updates it", func(t *testing.T) {
			_, err := writer.Update(ctx, cmSetPod("nats-0", "second"))
			require.NoError(t, err)
		}, func(t *testing.T, d *maintenance.Document) {
			assert.Equal(t, "second", d.Pods["nats-0"].Reason)
		}},
		{"the watch is re-established after it times out", func(t *testing.T) {
			n := watches.Load()
			require.Eventually(t, func() bool { return watches.Load() >= n+2 }, 30*time.Second, 50*time.Millisecond)
			got, _ := storetest.Receive(ch, 0)
			assert.False(t, got, "re-established watches must not notify without a change")
			_, err := writer.Update(ctx, cmSetPod("nats-0", "third"))
			require.NoError(t, err)
		}, func(t *testing.T, d *maintenance.Document) {
			assert.Equal(t, "third", d.Pods["nats-0"].Reason)
		}},
		{"someone deletes the ConfigMap", func(t *testing.T) {
			require.NoError(t, raw.Delete(ctx, name, metav1.DeleteOptions{}))
		}, func(t *testing.T, d *maintenance.Document) {
			assert.Empty(t, d.Pods)
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change(t)
			got, ok := storetest.Receive(ch, 30*time.Second)
			require.True(t, got && ok, "no notification")
			d, err := watcher.Get(ctx)
			require.NoError(t, err)
			st.want(t, d)
		})
	}

	t.Run("while the watch is established Get serves the watched document", func(t *testing.T) {
		require.Eventually(t, func() bool {
			n := gets.Load()
			for range 20 {
				_, err := watcher.Get(ctx)
				require.NoError(t, err)
			}
			return gets.Load() == n
		}, 30*time.Second, 10*time.Millisecond, "20 Gets should cost no API request")
	})

	cancel()
	require.Eventually(t, func() bool {
		_, ok := <-ch
		return !ok
	}, 10*time.Second, 10*time.Millisecond, "the channel must close when ctx ends")
}

// TestConfigMapStoreAPIServerDown stops the API server mid-run: writes
// answer maintenance.EUnavailable, reads keep serving the last state, and once it is
// back the watch resumes and writes succeed again.
func TestConfigMapStoreAPIServerDown(t *testing.T) {
	env := cmStart(t)
	ctx := context.Background()
	const name = "outage"
	o := ConfigMapStoreOptions{RequestTimeout: 3 * time.Second}
	s := env.store(t, name, o)
	other := env.store(t, name, o)
	before, err := s.Update(ctx, cmSetPod("nats-0", "before the outage"))
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx)
	require.NoError(t, err)
	_, err = other.Update(ctx, cmSetPod("nats-1", "also before"))
	require.NoError(t, err)
	got, ok := storetest.Receive(ch, 30*time.Second)
	require.True(t, got && ok, "watch should see the other store's write")
	last, err := s.Get(ctx)
	require.NoError(t, err)
	require.Len(t, last.Pods, 2)
	require.NotEqual(t, before.ResourceVersion, last.ResourceVersion)

	require.NoError(t, env.StopAPIServer())
	stopped := time.Now()

	t.Run("writes answer EUnavailable", func(t *testing.T) {
		for _, fn := range []func(*maintenance.Document) error{
			cmSetPod("nats-2", "during the outage"),
			func(d *maintenance.Document) error { delete(d.Pods, "nats-0"); return nil },
		} {
			began := time.Now()
			_, err := s.Update(ctx, fn)
			require.Error(t, err)
			assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
			var ue *url.Error
			assert.True(t, errors.As(err, &ue), "the cause is wrapped: %v", err)
			t.Logf("Update failed after %s: %v", time.Since(began).Round(time.Millisecond), err)
		}
	})
	t.Run("reads keep serving the last state", func(t *testing.T) {
		d, err := s.Get(ctx)
		require.NoError(t, err)
		assert.Equal(t, last, d)
	})
	t.Run("a store that never read has nothing to serve", func(t *testing.T) {
		_, err := env.store(t, name, o).Get(ctx)
		assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
	})

	require.NoError(t, env.StartAPIServer(ctx))
	t.Logf("API server down for %s", time.Since(stopped).Round(time.Millisecond))

	t.Run("after the restart the watch resumes and writes succeed", func(t *testing.T) {
		_, _ = storetest.Receive(ch, 0) // a re-list may or may not have notified
		_, err := other.Update(ctx, cmSetPod("nats-2", "after"))
		require.NoError(t, err)
		got, ok := storetest.Receive(ch, 30*time.Second)
		require.True(t, got && ok, "watch should resume after the restart")
		d, err := s.Update(ctx, func(d *maintenance.Document) error { delete(d.Pods, "nats-0"); return nil })
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"nats-1", "nats-2"}, cmKeys(d.Pods))
	})
}

// cmMessage returns the client's message of err's first *maintenance.Error.
func cmMessage(err error) string {
	if e, ok := errors.AsType[*maintenance.Error](err); ok {
		return e.Message
	}
	return ""
}

// cmEndingConfigMaps is an API whose watches end at once, without events,
// as a misbehaving proxy in front of the API server might do.
type cmEndingConfigMaps struct {
	corev1client.ConfigMapInterface
	watches *atomic.Int64
}

func (c cmEndingConfigMaps) ConfigMaps(string) corev1client.ConfigMapInterface { return c }

// IsWatchListSemanticsUnSupported tells client-go's Reflector that this
// API cannot stream an initial state: it lists, then watches.
func (c cmEndingConfigMaps) IsWatchListSemanticsUnSupported() bool { return true }

func (c cmEndingConfigMaps) List(context.Context, metav1.ListOptions) (*corev1.ConfigMapList, error) {
	return &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}}, nil
}

func (c cmEndingConfigMaps) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	c.watches.Add(1)
	w := watch.NewFake()
	w.Stop()
	return w, nil
}

// TestConfigMapStoreWatchEndingAtOnceBacksOff checks that watches that end
// as soon as they start are paced by the back-off instead of re-opened in
// a tight loop.
func TestConfigMapStoreWatchEndingAtOnceBacksOff(t *testing.T) {
	var watches atomic.Int64
	s := NewConfigMapStore(cmEndingConfigMaps{watches: &watches}, ConfigMapStoreOptions{WatchTimeout: time.Minute, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	_, err := s.Watch(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return watches.Load() >= 3 }, 10*time.Second, time.Millisecond)
	// Three watches take two pauses of the back-off: at least 100 and 200 ms.
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "%d watches", watches.Load())
}

// TestConfigMapStoreDeletedWithoutCreate deletes the ConfigMap under a
// store whose RBAC is the install's (get, list, watch and update of that
// one ConfigMap, no create): a write answers EUnavailable saying to
// recreate it, never an internal error.
func TestConfigMapStoreDeletedWithoutCreate(t *testing.T) {
	env := cmStart(t)
	ctx := context.Background()
	const name = "prober-maintenance"
	admin, err := env.Clientset()
	require.NoError(t, err)
	_, err = admin.RbacV1().Roles(cmNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "prober"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{name}, Verbs: []string{"get", "list", "watch", "update"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	const user = "system:serviceaccount:" + cmNamespace + ":prober"
	_, err = admin.RbacV1().RoleBindings(cmNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prober"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "prober"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := env.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	raw := admin.CoreV1().ConfigMaps(cmNamespace)
	_, err = raw.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err, "the install ships the ConfigMap")

	s := NewConfigMapStore(cs.CoreV1(), ConfigMapStoreOptions{Namespace: cmNamespace, Name: name, Logger: zerolog.Nop()})
	_, err = s.Update(ctx, cmSetPod("nats-0", "with the ConfigMap"))
	require.NoError(t, err, "the install's RBAC is enough while the ConfigMap exists")

	require.NoError(t, raw.Delete(ctx, name, metav1.DeleteOptions{}))
	_, err = s.Update(ctx, cmSetPod("nats-1", "after it was deleted"))
	require.Error(t, err)
	assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
	assert.Contains(t, cmMessage(err), "recreate the ConfigMap "+name)
	assert.Contains(t, err.Error(), "forbidden", "the API server's answer is kept")
}
