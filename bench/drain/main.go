// Command drain measures, on the embedded default, side by side:
//
//	(1) the write gap of a drain: the longest pause of synchronous writes
//	    through another node while the R3 stream's leader is drained
//	    (PUT /pods/<leader> {"mode":"drain"}) and brought back (DELETE,
//	    which gives its leaderships back), next to the fence (the product's
//	    default mode) on the same app;
//	(2) the leader skew (most minus fewest leaderships of a pod) after a
//	    rolling maintenance of every pod (PUT /rollouts/<name>, hold 1 s per
//	    turn), with the give-back and without it (restoreLeaders=false);
//	(3) the time to give a node back the leaderships of a stream and its
//	    consumers (-consumers, R3), one group at a time (a fresh sweep and an
//	    election per group, as the give-back did before) next to the
//	    give-back in rounds (HandOff.GiveBack: one sweep per round, the step
//	    downs in flight together).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

func main() {
	reps := flag.Int("reps", 3, "repetitions of the write-gap measurement and of the maintenance sequence")
	settle := flag.Duration("settle", 1500*time.Millisecond, "how long writes keep going after a step has completed")
	consumers := flag.Int("consumers", 200, "consumers of the stream whose leaderships (3) gives back")
	only := flag.Int("only", 0, "run only this part (1, 2 or 3); 0 runs all")
	flag.Parse()
	if err := run(*reps, *settle, *consumers, *only, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
		os.Exit(1)
	}
}

func run(reps int, settle time.Duration, consumers, only int, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-drain-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	embedded := &app.Embedded{Listen: "127.0.0.1:0", DataDir: dir, Resync: 5 * time.Second, Logger: zerolog.Nop()}
	stop, err := gap.RunEmbedded(ctx, embedded)
	if err != nil {
		return err
	}
	defer stop()
	c := embedded.Cluster()
	base := "http://" + embedded.Addr()

	if only == 0 || only == 1 {
		if err := writeGaps(ctx, c, base, reps, settle, out); err != nil {
			return err
		}
	}
	if only == 0 || only == 2 {
		if err := skews(ctx, c, base, reps, out); err != nil {
			return err
		}
	}
	if only == 0 || only == 3 {
		return giveBacks(ctx, c, consumers, reps, out)
	}
	return nil
}

// writeGaps measures (1).
func writeGaps(ctx context.Context, c *natsraft.Embedded, base string, reps int, settle time.Duration, out io.Writer) error {
	fmt.Fprintf(out, "(1) write gap on R3 stream demo, sync publishes through a node that stays up, %d repetitions\n", reps)
	gaps := map[string][2][]time.Duration{}
	for _, mode := range []string{"drain", "fence"} {
		var enter, leave []time.Duration
		for i := 0; i < reps; i++ {
			leader, err := gap.StreamLeader(ctx, c)
			if err != nil {
				return err
			}
			in, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error {
				return put(ctx, base+"/pods/"+leader+"?wait=60s", `{"mode":"`+mode+`"}`)
			})
			if err != nil {
				return fmt.Errorf("%s enter: %w", mode, err)
			}
			back, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error {
				return gap.Call(ctx, http.MethodDelete, base+"/pods/"+leader+"?wait=60s")
			})
			if err != nil {
				return fmt.Errorf("%s leave: %w", mode, err)
			}
			fmt.Fprintf(out, "  %s run %d: leader %s  entering %6.3fs  leaving %6.3fs\n", mode, i+1, leader, in.Seconds(), back.Seconds())
			enter, leave = append(enter, in), append(leave, back)
		}
		gaps[mode] = [2][]time.Duration{enter, leave}
	}
	fmt.Fprintf(out, "%-28s %-26s %-26s\n", "max write gap (min/med/max)", "entering", "leaving")
	for _, mode := range []string{"drain", "fence"} {
		fmt.Fprintf(out, "%-28s %-26s %-26s\n", mode, gap.Stats(gaps[mode][0]), gap.Stats(gaps[mode][1]))
	}

	return nil
}

// skews measures (2).
func skews(ctx context.Context, c *natsraft.Embedded, base string, reps int, out io.Writer) error {
	fmt.Fprintf(out, "\n(2) leader skew after a rollout of every pod (fence, hold 1s per turn), %d repetitions\n", reps)
	var with, without []int
	for i := 0; i < reps; i++ {
		for _, restore := range []bool{true, false} {
			if err := balance(ctx, base); err != nil {
				return err
			}
			skew, err := rollout(ctx, c, base, fmt.Sprintf("skew-%d-%t", i, restore), restore)
			if err != nil {
				return err
			}
			if restore {
				with = append(with, skew)
			} else {
				without = append(without, skew)
			}
		}
	}
	fmt.Fprintf(out, "%-28s %v\n%-28s %v\n", "with give-back", with, "without (restoreLeaders=false)", without)
	return nil
}

// giveBacks measures (3): a stream "bulk" with consumers durable consumers,
// R3; each repetition hands every leadership off one pod and gives the
// bulk ones back, one group at a time and then in rounds.
func giveBacks(ctx context.Context, c *natsraft.Embedded, consumers, reps int, out io.Writer) error {
	js, closeJS, err := gap.JetStream(c)
	if err != nil {
		return err
	}
	defer closeJS()
	// Right after (2) the last pod of the rollout may still count as
	// offline for placement: each creation is tried again for a while.
	var s jetstream.Stream
	if err := gap.Retry(ctx, "create stream bulk", func() (err error) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "bulk", Subjects: []string{"bulk.>"}, Replicas: 3})
		return err
	}); err != nil {
		return err
	}
	names := []string{"bulk"}
	for i := range consumers {
		name := fmt.Sprintf("c%04d", i)
		if err := gap.Retry(ctx, "create consumer "+name, func() error {
			_, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}); err != nil {
			return err
		}
		names = append(names, "bulk/"+name)
	}
	col := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	h := &natsraft.HandOff{Views: col, Dial: c.Dial, Logger: zerolog.Nop()}
	pod := c.Nodes()[1].Name()
	if err := settled(ctx, col, len(names)); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n(3) give-back of %d leaderships (stream bulk and %d consumers, R3) to %s, %d repetitions\n",
		len(names), consumers, pod, reps)
	took := map[string][]time.Duration{}
	modes := []string{"one group at a time", "in rounds"}
	for i := 0; i < reps; i++ {
		for _, mode := range modes {
			if err := h.Run(ctx, pod, natsraft.Scope{}); err != nil {
				return fmt.Errorf("hand-off of %s: %w", pod, err)
			}
			if err := settled(ctx, col, len(names)); err != nil {
				return err
			}
			begin := time.Now()
			back := 0
			if mode == modes[0] {
				back, err = oneAtATime(ctx, h, col, pod, names)
			} else {
				var given []string
				given, _, err = h.GiveBack(ctx, pod, names)
				back = len(given)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			d := time.Since(begin)
			took[mode] = append(took[mode], d)
			fmt.Fprintf(out, "  %-20s run %d: %d of %d back in %7.3fs\n", mode, i+1, back, len(names), d.Seconds())
		}
	}
	fmt.Fprintf(out, "%-28s %s\n", "give-back (min/med/max)", "")
	for _, mode := range modes {
		fmt.Fprintf(out, "%-28s %s\n", mode, gap.Stats(took[mode]))
	}
	fmt.Fprintf(out, "%-28s %s faster on the medians\n", "in rounds", gap.Ratio(took[modes[0]], took[modes[1]]))
	return nil
}

// oneAtATime gives the leadership of each named group back to pod the way
// the give-back did before the rounds: each group on its own, stepped down
// and waited for in a fresh sweep before the next, 10 s at most each.
func oneAtATime(ctx context.Context, h *natsraft.HandOff, col *natsraft.Collector, pod string, names []string) (int, error) {
	v, err := col.Sweep(ctx)
	if err != nil {
		return 0, err
	}
	back := 0
	for _, name := range names {
		for _, g := range v.Groups {
			if g.Name != name {
				continue
			}
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := h.MoveLeader(mctx, natsraft.LeaderMove{Group: g.Name, Kind: g.Kind, Account: g.Account, From: g.Leader, To: pod})
			cancel()
			if err == nil {
				back++
			}
		}
	}
	return back, nil
}

// settled waits until the view has at least groups groups besides demo's
// and meta, each led, with every replica current.
func settled(ctx context.Context, col *natsraft.Collector, groups int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := col.Sweep(ctx)
		if err == nil && len(v.Groups) >= groups+3 && !slices.ContainsFunc(v.Groups, func(g natsraft.Group) bool {
			return g.Leader == "" || slices.ContainsFunc(g.Peers, func(p natsraft.Peer) bool { return !p.Current })
		}) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("groups not led and current after 2m (last sweep: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rollout runs a rolling maintenance of every pod, waits until it is Done
// and returns the leader skew at the end, from a fresh sweep.
func rollout(ctx context.Context, c *natsraft.Embedded, base, name string, restore bool) (int, error) {
	body := `{"hold":"1s","reason":"bench"}`
	if !restore {
		body = `{"hold":"1s","reason":"bench","restoreLeaders":false}`
	}
	url := base + "/rollouts/" + name
	if _, err := gap.Send(ctx, http.MethodPut, url, body); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		b, err := gap.Send(ctx, http.MethodGet, url, "")
		if err != nil {
			return 0, err
		}
		var v maintenance.RolloutView
		if err := json.Unmarshal(b, &v); err != nil {
			return 0, fmt.Errorf("GET %s: %w", url, err)
		}
		if v.State == maintenance.RolloutDone {
			break
		}
		if v.State.Finished() || time.Now().After(deadline) {
			return 0, fmt.Errorf("rollout %s is %s: %s", name, v.State, v.PauseReason)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := gap.Call(ctx, http.MethodDelete, url); err != nil {
		return 0, err
	}
	col := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	v, err := col.Sweep(ctx)
	if err != nil {
		return 0, err
	}
	var pods []string
	for _, n := range c.Nodes() {
		pods = append(pods, n.Name())
	}
	return natsraft.Skew(natsraft.LeaderCounts(v, pods)), nil
}

// balance evens out the leaderships first, so that each sequence starts
// from the same skew.
func balance(ctx context.Context, base string) error {
	return gap.Call(ctx, http.MethodPost, base+"/balance")
}

// put sends PUT url with body and wants 200; a dry run's verdict that is
// not safe is an error too.
func put(ctx context.Context, url, body string) error {
	b, err := gap.Send(ctx, http.MethodPut, url, body)
	if err != nil {
		return err
	}
	var verdict struct {
		Safe *bool `json:"safe"`
	}
	if json.Unmarshal(b, &verdict) == nil && verdict.Safe != nil && !*verdict.Safe {
		return fmt.Errorf("PUT %s: not safe", url)
	}
	return nil
}
