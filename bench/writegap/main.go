// Command writegap measures the longest pause of synchronous JetStream writes
// while the R3 stream's leader enters and leaves maintenance, for two
// sequences side by side in one run:
//
//	(a) fence only: the node is cut off as if it were lost;
//	(c) hand off + fence, without quiescing JetStream (why quiesce matters);
//	(b) the full sequence through the product: PUT /pods/<leader> on the
//	    embedded default (hand off leaderships, quiesce JetStream, fence),
//	    then DELETE (unfence, resume, wait for catch-up).
//
// Writes go through a node that stays up. It prints min/median/max of the
// max write gap over the repetitions and the ratio (a)/(b).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/natsraft"
)

func main() {
	reps := flag.Int("reps", 5, "repetitions per sequence")
	settle := flag.Duration("settle", 1500*time.Millisecond, "how long writes keep going after a step has completed and writes flow again")
	withC := flag.Bool("with-c", true, "also measure (c): hand off + fence without quiescing JetStream")
	flag.Parse()
	if err := run(*reps, *settle, *withC, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "writegap:", err)
		os.Exit(1)
	}
}

type result struct{ enter, leave []time.Duration }

func run(reps int, settle time.Duration, withC bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	fmt.Fprintf(out, "write gap on R3 stream demo, sync publishes through a node that stays up, %d repetitions\n", reps)
	floor, err := benchDirect(ctx, noop, reps, settle, out)
	if err != nil {
		return fmt.Errorf("no-op: %w", err)
	}
	a, err := benchDirect(ctx, fenceOnly, reps, settle, out)
	if err != nil {
		return fmt.Errorf("fence only: %w", err)
	}
	var c result
	if withC {
		if c, err = benchDirect(ctx, handOffFence, reps, settle, out); err != nil {
			return fmt.Errorf("hand off + fence: %w", err)
		}
	}
	full, err := benchFull(ctx, reps, settle, out)
	if err != nil {
		return fmt.Errorf("full sequence: %w", err)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-34s %-26s %-26s\n", "max write gap (min/median/max)", "entering", "leaving")
	fmt.Fprintf(out, "%-34s %-26s %-26s\n", "(0) no-op step (noise floor)", gap.Stats(floor.enter), gap.Stats(floor.leave))
	fmt.Fprintf(out, "%-34s %-26s %-26s\n", "(a) fence only", gap.Stats(a.enter), gap.Stats(a.leave))
	if withC {
		fmt.Fprintf(out, "%-34s %-26s %-26s\n", "(c) hand off + fence, no quiesce", gap.Stats(c.enter), gap.Stats(c.leave))
	}
	fmt.Fprintf(out, "%-34s %-26s %-26s\n", "(b) hand off + quiesce + fence", gap.Stats(full.enter), gap.Stats(full.leave))
	fmt.Fprintf(out, "%-34s %-26s %-26s\n", "ratio of medians (a)/(b)", gap.Ratio(a.enter, full.enter), gap.Ratio(a.leave, full.leave))
	return nil
}

// direct is a sequence run straight on a bare embedded cluster, without the
// product's control loop (which would undo a fence nobody asked for).
type direct struct {
	label        string
	enter, leave func(ctx context.Context, c *natsraft.Embedded, node string) error
}

var (
	// noop measures the publisher's own pauses (pacing, round trips,
	// scheduling): the floor under every other row.
	noop = direct{
		label: "(0)",
		enter: func(context.Context, *natsraft.Embedded, string) error { return nil },
		leave: func(context.Context, *natsraft.Embedded, string) error { return nil },
	}
	fenceOnly = direct{
		label: "(a)",
		enter: func(ctx context.Context, c *natsraft.Embedded, node string) error { return c.Node(node).Fence(ctx) },
		leave: func(ctx context.Context, c *natsraft.Embedded, node string) error { return c.Node(node).Unfence(ctx) },
	}
	handOffFence = direct{
		label: "(c)",
		enter: func(ctx context.Context, c *natsraft.Embedded, node string) error {
			if err := handOff(c).Run(ctx, node, natsraft.Scope{Leaving: true}); err != nil {
				return err
			}
			return c.Node(node).Fence(ctx)
		},
		leave: func(ctx context.Context, c *natsraft.Embedded, node string) error { return c.Node(node).Unfence(ctx) },
	}
)

func handOff(c *natsraft.Embedded) *natsraft.HandOff {
	col := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	return &natsraft.HandOff{Views: col, Dial: c.Dial, Logger: zerolog.Nop()}
}

// benchDirect runs seq on the stream leader of a bare cluster reps times.
func benchDirect(ctx context.Context, seq direct, reps int, settle time.Duration, out io.Writer) (result, error) {
	var res result
	dir, err := os.MkdirTemp("", "writegap-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	c, err := natsraft.StartEmbedded(ctx, natsraft.EmbeddedOptions{DataDir: dir, Demo: true, Logger: zerolog.Nop()})
	if err != nil {
		return res, err
	}
	defer c.Close()
	for i := 0; i < reps; i++ {
		leader, err := gap.StreamLeader(ctx, c)
		if err != nil {
			return res, err
		}
		enter, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error { return seq.enter(ctx, c, leader) })
		if err != nil {
			return res, fmt.Errorf("enter: %w", err)
		}
		leave, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error { return seq.leave(ctx, c, leader) })
		if err != nil {
			return res, fmt.Errorf("leave: %w", err)
		}
		if err := waitCurrent(ctx, c, leader); err != nil {
			return res, err
		}
		fmt.Fprintf(out, "  %s run %d: leader %s  entering %6.3fs  leaving %6.3fs\n", seq.label, i+1, leader, enter.Seconds(), leave.Seconds())
		res.enter, res.leave = append(res.enter, enter), append(res.leave, leave)
	}
	return res, nil
}

// benchFull drives the product: PUT and DELETE /pods/<leader> on the API.
func benchFull(ctx context.Context, reps int, settle time.Duration, out io.Writer) (result, error) {
	var res result
	dir, err := os.MkdirTemp("", "writegap-b-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	embedded := &app.Embedded{Listen: "127.0.0.1:0", DataDir: dir, ClientPort: 0, MonitorPort: 0, Resync: 5 * time.Second, Logger: zerolog.Nop()}
	stop, err := gap.RunEmbedded(ctx, embedded)
	if err != nil {
		return res, err
	}
	defer stop()
	c := embedded.Cluster()
	base := "http://" + embedded.Addr()
	for i := 0; i < reps; i++ {
		leader, err := gap.StreamLeader(ctx, c)
		if err != nil {
			return res, err
		}
		enter, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error {
			return gap.Call(ctx, http.MethodPut, base+"/pods/"+leader+"?wait=60s")
		})
		if err != nil {
			return res, fmt.Errorf("enter: %w", err)
		}
		leave, err := gap.Measure(ctx, c, leader, settle, func(ctx context.Context) error {
			return gap.Call(ctx, http.MethodDelete, base+"/pods/"+leader+"?wait=60s")
		})
		if err != nil {
			return res, fmt.Errorf("leave: %w", err)
		}
		fmt.Fprintf(out, "  (b) run %d: leader %s  entering %6.3fs  leaving %6.3fs\n", i+1, leader, enter.Seconds(), leave.Seconds())
		res.enter, res.leave = append(res.enter, enter), append(res.leave, leave)
	}
	return res, nil
}

// waitCurrent waits until every replica of demo, target included, is current.
func waitCurrent(ctx context.Context, c *natsraft.Embedded, target string) error {
	h := handOff(c)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _, err := h.CaughtUp(ctx, target); err == nil && ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not catch up", target)
}
