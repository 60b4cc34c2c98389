// Command drain measures, on the embedded default, side by side:
//
//	(1) the write gap of a drain: the longest pause of synchronous writes
//	    through another node while the R3 stream's leader is drained
//	    (PUT /pods/<leader> {"mode":"drain"}) and brought back (DELETE,
//	    which gives its leaderships back), next to the fence (the product's
//	    default mode) on the same app;
//	(2) the leader skew (most minus fewest leaderships of a pod) after a
//	    rolling maintenance of every pod (PUT /rollouts/<name>, hold 1 s per
//	    turn), with the give-back and without it (restoreLeaders=false).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

func main() {
	reps := flag.Int("reps", 3, "repetitions of the write-gap measurement and of the maintenance sequence")
	settle := flag.Duration("settle", 1500*time.Millisecond, "how long writes keep going after a step has completed")
	flag.Parse()
	if err := run(*reps, *settle, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
		os.Exit(1)
	}
}

func run(reps int, settle time.Duration, out io.Writer) error {
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
