// Package storetest is the contract every maintenance.Store keeps, as a
// test suite that each implementation runs against its real backing (the
// file store on a file, the ConfigMap store on a real API server), and the
// helpers those suites share.
package storetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
)

// Backing makes a fresh, empty backing for one case of the contract and
// returns how to open stores on it: every store open returns sees the
// others' writes, as two prober processes on one file, or two sidecars on
// one ConfigMap, do.
type Backing func(t *testing.T) (open func() maintenance.Store)

// notifyWithin bounds how long a watch may take to notify a change.
const notifyWithin = 30 * time.Second

// Run checks the Store contract (see maintenance.Store) on stores of
// backing.
func Run(t *testing.T, backing Backing) {
	ctx := context.Background()
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	setPod := func(pod, reason string) func(*maintenance.Document) error {
		return func(d *maintenance.Document) error {
			d.Pods[pod] = maintenance.Entry{Reason: reason, Since: since}
			return nil
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, open func() maintenance.Store)
	}{
		{"a new backing reads as an empty document", func(t *testing.T, open func() maintenance.Store) {
			d, err := open().Get(ctx)
			require.NoError(t, err)
			assert.Empty(t, d.Pods)
			assert.Empty(t, d.DCs)
			assert.Empty(t, d.Status)
			assert.NotNil(t, d.Pods, "maps are allocated")
			assert.NotNil(t, d.DCs, "maps are allocated")
			assert.NotNil(t, d.Status, "maps are allocated")
		}},
		{"an update is read back by the writer and by another store", func(t *testing.T, open func() maintenance.Store) {
			writer, reader := open(), open()
			at := since.Add(time.Hour)
			stored, err := writer.Update(ctx, func(d *maintenance.Document) error {
				d.Pods["nats-0"] = maintenance.Entry{Reason: "kernel upgrade", RequestedBy: "ops", Since: since, ExpiresAt: &at, Force: true}
				d.DCs["dc1"] = maintenance.Entry{Reason: "rack move", Since: since}
				d.Status["nats-0"] = maintenance.Status{Phase: maintenance.PhaseFencing, Message: "m", ObservedAt: since, PhaseSince: since}
				return nil
			})
			require.NoError(t, err)
			assert.NotEmpty(t, stored.ResourceVersion)
			for _, s := range []maintenance.Store{writer, reader} {
				got, err := s.Get(ctx)
				require.NoError(t, err)
				assert.Equal(t, stored, got)
			}
		}},
		{"a rollout is stored whole, its progress read back by another store", func(t *testing.T, open func() maintenance.Store) {
			writer, reader := open(), open()
			entered, lease := since.Add(time.Minute), since.Add(time.Hour)
			ro := maintenance.Rollout{
				Spec:        maintenance.RolloutSpec{Pods: []string{"nats-0", "nats-1"}, Reason: "kernel", Hold: "5m0s"},
				RequestedBy: "ops", Created: since, State: maintenance.RolloutPaused, PauseReason: "unsafe",
				Pods: []maintenance.RolloutPod{
					{Pod: "nats-0", Step: maintenance.StepHolding, Entered: &entered, InMaintenance: &entered},
					{Pod: "nats-1", Step: maintenance.StepPending},
				},
				Driver: "nats-2", LeaseUntil: &lease,
			}
			stored, err := writer.Update(ctx, func(d *maintenance.Document) error {
				d.Rollouts["kernel"] = ro
				d.Pods["nats-0"] = maintenance.Entry{Reason: "rollout kernel: kernel", RequestedBy: "rollout kernel", Since: entered}
				return nil
			})
			require.NoError(t, err)
			got, err := reader.Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, stored, got)
			assert.Equal(t, ro, got.Rollouts["kernel"])
			assert.NotNil(t, got.Rollouts, "maps are allocated")
		}},
		{"an unchanged document is not written", func(t *testing.T, open func() maintenance.Store) {
			s := open()
			first, err := s.Update(ctx, setPod("nats-1", "r"))
			require.NoError(t, err)
			second, err := s.Update(ctx, setPod("nats-1", "r"))
			require.NoError(t, err)
			assert.Equal(t, first.ResourceVersion, second.ResourceVersion)
		}},
		{"an error from fn is returned as is and nothing is written", func(t *testing.T, open func() maintenance.Store) {
			s := open()
			before, err := s.Update(ctx, setPod("nats-2", "r"))
			require.NoError(t, err)
			boom := maintenance.Errorf(maintenance.EUnsafe, "boom")
			_, err = s.Update(ctx, func(d *maintenance.Document) error {
				delete(d.Pods, "nats-2")
				return boom
			})
			assert.Same(t, boom, err)
			after, err := open().Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, before, after)
		}},
		{"a name that makes no valid key is EInvalid and nothing is written", func(t *testing.T, open func() maintenance.Store) {
			s := open()
			_, err := s.Update(ctx, setPod("no/slash", "r"))
			assert.Equal(t, maintenance.EInvalid, maintenance.ErrorCode(err), "%v", err)
			d, err := s.Get(ctx)
			require.NoError(t, err)
			assert.Empty(t, d.Pods)
		}},
		{"documents handed out are private copies", func(t *testing.T, open func() maintenance.Store) {
			s := open()
			stored, err := s.Update(ctx, setPod("nats-3", "r"))
			require.NoError(t, err)
			stored.Pods["nats-3"] = maintenance.Entry{Reason: "changed by a caller"}
			got, err := s.Get(ctx)
			require.NoError(t, err)
			got.Pods["other"] = maintenance.Entry{}
			again, err := s.Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, "r", again.Pods["nats-3"].Reason)
			assert.NotContains(t, again.Pods, "other")
		}},
		{"concurrent updates of two stores lose nothing", func(t *testing.T, open func() maintenance.Store) {
			stores := []maintenance.Store{open(), open()}
			const writers, each = 4, 10
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for i := range writers {
				s := stores[i%len(stores)]
				wg.Go(func() {
					for range each {
						_, err := s.Update(ctx, func(d *maintenance.Document) error { return Increment(d.DCs, "counter") })
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			d, err := open().Get(ctx)
			require.NoError(t, err)
			assert.Equal(t, strconv.Itoa(writers*each), d.DCs["counter"].Reason)
		}},
		{"a watch notifies another store's writes, coalesced, and closes with its context", func(t *testing.T, open func() maintenance.Store) {
			watcher, writer := open(), open()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := watcher.Watch(wctx)
			require.NoError(t, err)
			for i := range 3 {
				_, err := writer.Update(ctx, setPod("nats-4", fmt.Sprint(i)))
				require.NoError(t, err)
			}
			awaitNotified(t, ch, watcher, func(d *maintenance.Document) bool { return d.Pods["nats-4"].Reason == "2" })
			_, err = writer.Update(ctx, setPod("nats-4", "after"))
			require.NoError(t, err)
			awaitNotified(t, ch, watcher, func(d *maintenance.Document) bool { return d.Pods["nats-4"].Reason == "after" })
			cancel()
			require.Eventually(t, func() bool {
				_, ok := <-ch
				return !ok
			}, notifyWithin, 10*time.Millisecond, "the channel closes when ctx ends")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, backing(t))
		})
	}
}

// awaitNotified receives from ch until a notification is followed by a
// document that satisfies cond: notifications are coalesced, and a
// receiver re-reads the document after each. It fails the test when ch
// stays silent for notifyWithin or closes first.
func awaitNotified(t *testing.T, ch <-chan struct{}, s maintenance.Store, cond func(*maintenance.Document) bool) {
	t.Helper()
	for {
		got, ok := Receive(ch, notifyWithin)
		require.True(t, got, "no notification within %s", notifyWithin)
		require.True(t, ok, "the channel closed")
		d, err := s.Get(context.Background())
		require.NoError(t, err)
		if cond(d) {
			return
		}
	}
}

// Receive reports whether ch delivers a value (or is closed: ok false)
// within d; with d of zero or less it only takes a value already there.
func Receive(ch <-chan struct{}, d time.Duration) (got, ok bool) {
	if d <= 0 {
		select {
		case _, ok := <-ch:
			return true, ok
		default:
			return false, false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case _, ok := <-ch:
		return true, ok
	case <-t.C:
		return false, false
	}
}

// Increment adds one to the counter kept as the Reason of entry name.
func Increment(m map[string]maintenance.Entry, name string) error {
	e := m[name]
	n := 0
	if e.Reason != "" {
		var err error
		if n, err = strconv.Atoi(e.Reason); err != nil {
			return fmt.Errorf("counter %s: %w", name, err)
		}
	}
	e.Reason = strconv.Itoa(n + 1)
	m[name] = e
	return nil
}
