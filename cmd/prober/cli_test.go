package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// The order of the phases on the way in and on the way out.
var (
	enteringPhases = []maintenance.Phase{
		maintenance.PhaseActive, maintenance.PhaseRequested, maintenance.PhaseHandingOff,
		maintenance.PhaseFencing, maintenance.PhaseInMaintenance,
	}
	leavingPhases = []maintenance.Phase{
		maintenance.PhaseInMaintenance, maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp,
		maintenance.PhaseActive,
	}
)

// progressRE matches a progress line: "     0.3s  nats-1       Fencing: …".
var progressRE = regexp.MustCompile(`^\s+(\d+\.\d)s\s+(\S+)\s+(?:still )?([A-Za-z]+)`)

// progress returns the phases the progress lines of out show for pod, in
// order, and checks that their times never go back.
func progress(t *testing.T, out, pod string) []maintenance.Phase {
	t.Helper()
	var phases []maintenance.Phase
	last := -1.0
	for _, l := range lines(out) {
		m := progressRE.FindStringSubmatch(l)
		if m == nil || m[2] != pod {
			continue
		}
		var secs float64
		_, err := fmt.Sscan(m[1], &secs)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secs, last, "progress times go forward: %q", l)
		last = secs
		if p := maintenance.Phase(m[3]); len(phases) == 0 || phases[len(phases)-1] != p {
			phases = append(phases, p)
		}
	}
	return phases
}

// requireInOrder checks that got is a subsequence of order (phases may be
// too quick to be seen, never out of order) ending with the last one.
func requireInOrder(t *testing.T, got, order []maintenance.Phase) {
	t.Helper()
	require.NotEmpty(t, got)
	assert.Equal(t, order[len(order)-1], got[len(got)-1], "last phase of %v", got)
	i := 0
	for _, p := range got {
		j := slices.Index(order[i:], p)
		require.GreaterOrEqual(t, j, 0, "phase %s out of order in %v (order %v)", p, got, order)
		i += j
	}
}

// statusRow returns the row of pod in the output of "prober status".
func statusRow(t *testing.T, out, pod string) string {
	t.Helper()
	for _, l := range lines(out) {
		if strings.HasPrefix(l, pod+" ") {
			return l
		}
	}
	t.Fatalf("no row for %s in\n%s", pod, out)
	return ""
}

// TestCLIWalkthrough drives the embedded default through the command line
// as a person would: status, raft, a dry run, a pod into maintenance with
// progress, the refusal of an unsafe second pod, and back.
func TestCLIWalkthrough(t *testing.T) {
	a := liveApp(t)
	server := []string{"--server", a.base}
	cli := func(args ...string) result { return run(append(args, server...)...) }
	t.Cleanup(func() {
		// Leave the shared app clean even when a step failed half-way.
		for pod := range a.config(t).Pods {
			cli("maintenance", "off", pod, "--wait", "60s")
		}
	})

	var raft prober.RaftResponse
	_, _ = a.get(t, "/raft", &raft)
	metaLeader := ""
	for _, g := range raft.Groups {
		if g.Kind == natsraft.KindMeta {
			metaLeader = g.Leader
		}
	}
	require.NotEmpty(t, metaLeader)

	t.Run("status of a healthy cluster", func(t *testing.T) {
		r := cli("status")
		require.Equal(t, 0, r.code, r)
		assert.Empty(t, r.stderr)
		assert.Regexp(t, `(?m)^CLUSTER:\s+3 pods in 1 dc \(dc1\), 3 Raft groups, meta leader nats-\d, view \d+\.\ds old$`, r.stdout)
		assert.Regexp(t, `(?m)^MAINTENANCE:\s+none$`, r.stdout)
		assert.Regexp(t, `(?m)^POD\s+DC\s+ROLE\s+LEADS\s+PHASE\s+SINCE\s+REASON\s+EXPIRES$`, r.stdout)
		for _, pod := range []string{"nats-0", "nats-1", "nats-2"} {
			assert.Regexp(t, `^`+pod+`\s+dc1\s+(follower|leader|meta-leader)\s+\S+\s+Active\s+-\s+-\s+-$`, statusRow(t, r.stdout, pod))
		}
		assert.Equal(t, 1, strings.Count(r.stdout, "meta-leader"), r)
		assert.Regexp(t, `^`+metaLeader+`\s+dc1\s+meta-leader\s+\S*_meta_`, statusRow(t, r.stdout, metaLeader))
	})

	t.Run("status as JSON", func(t *testing.T) {
		r := cli("status", "--json")
		require.Equal(t, 0, r.code, r)
		var pods []maintenance.PodView
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &pods), r)
		require.Len(t, pods, 3)
		for i, pv := range pods {
			assert.Equal(t, "nats-"+string(rune('0'+i)), pv.Pod)
			assert.Equal(t, maintenance.PhaseActive, pv.Phase)
		}
	})

	t.Run("raft", func(t *testing.T) {
		r := cli("raft")
		require.Equal(t, 0, r.code, r)
		assert.Regexp(t, `(?m)^NODE\s+DC\s+REACHABLE\s+JETSTREAM\s+ROUTES\s+LEADS$`, r.stdout)
		for _, pod := range []string{"nats-0", "nats-1", "nats-2"} {
			assert.Regexp(t, `(?m)^`+pod+`\s+dc1\s+yes\s+yes\s+2\s+\d+$`, r.stdout)
		}
		assert.Regexp(t, `(?m)^GROUPS \(3\)$`, r.stdout)
		assert.Regexp(t, `(?m)^_meta_\s+meta\s+-\s+`+metaLeader+`\s+\d+\s+\d+\s+\d+\s+.*`+metaLeader+`\*`, r.stdout)
		assert.Regexp(t, `(?m)^demo\s+stream\s+APP\s+nats-\d\s+`, r.stdout)
		assert.Regexp(t, `(?m)^demo/demo-consumer\s+consumer\s+APP\s+nats-\d\s+`, r.stdout)
	})

	t.Run("dry run of a safe request", func(t *testing.T) {
		r := cli("maintenance", "on", "nats-1", "--dry-run", "--reason", "kernel upgrade")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "dry run: maintenance of pod nats-1 is safe; it would change the stored state\n", r.stdout)
		assert.Empty(t, a.config(t).Pods, "a dry run writes nothing")
	})

	t.Run("on follows the phases", func(t *testing.T) {
		begin := time.Now()
		// Flags before and after the positional arguments.
		r := cli("maintenance", "--reason", "kernel upgrade", "on", "nats-1", "--ttl", "30m", "--wait", "60s")
		require.Equal(t, 0, r.code, r)
		t.Logf("maintenance on nats-1 took %.2fs:\n%s", time.Since(begin).Seconds(), r.stdout)
		out := lines(r.stdout)
		assert.Equal(t, "pod nats-1: maintenance requested by "+prober.LoopbackUser, out[0])
		assert.Regexp(t, `^pod nats-1 is in maintenance \(\d+\.\ds\)$`, out[len(out)-1])
		requireInOrder(t, progress(t, r.stdout, "nats-1"), enteringPhases)

		pv := a.pod(t, "nats-1")
		assert.True(t, pv.InMaintenance)
		assert.Equal(t, maintenance.PhaseInMaintenance, pv.Phase)
		assert.Equal(t, "kernel upgrade", pv.Reason)
		require.NotNil(t, pv.ExpiresAt)
		assert.WithinDuration(t, time.Now().Add(30*time.Minute), *pv.ExpiresAt, time.Minute)
	})

	t.Run("status shows the maintenance", func(t *testing.T) {
		var r result
		// The cluster view is refreshed every second: wait until it shows
		// the fence.
		poll(t, 15*time.Second, "nats-1 fenced in status", func() (bool, string) {
			r = cli("status")
			return r.code == 0 && regexp.MustCompile(`^nats-1\s+dc1\s+fenced\s`).MatchString(statusRow(t, r.stdout, "nats-1")), r.String()
		})
		assert.Regexp(t, `(?m)^MAINTENANCE:\s+nats-1 \(InMaintenance\)$`, r.stdout)
		assert.Regexp(t, `(?m)^FINDINGS:\s+\d+: .*\(details: prober raft\)$`, r.stdout)
		assert.Regexp(t, `^nats-1\s+dc1\s+fenced\s+-\s+InMaintenance\s+(\d+m)?\d+s ago\s+kernel upgrade\s+in (29m\d+s|30m0s)$`, statusRow(t, r.stdout, "nats-1"))
		assert.Regexp(t, `(?m)^nats-1: fenced and quiesced`, r.stdout, "the phase message is shown under the table")
	})

	t.Run("raft shows the node fenced and quiesced", func(t *testing.T) {
		var r result
		poll(t, 15*time.Second, "nats-1 quiesced in raft", func() (bool, string) {
			r = cli("raft")
			return r.code == 0 && regexp.MustCompile(`(?m)^nats-1\s+dc1\s+yes\s+no\s+0\s+0$`).MatchString(r.stdout), r.String()
		})
		assert.Regexp(t, `(?m)^nats-0\s+dc1\s+yes\s+yes\s+1\s+\d+$`, r.stdout)
		assert.Regexp(t, `(?m)^FINDINGS \(\d+\)$`, r.stdout)
		assert.Regexp(t, `(?m)^   nodes:\s+nats-1$`, r.stdout, "a finding names the node in maintenance")
	})

	t.Run("on again is idempotent", func(t *testing.T) {
		r := cli("maintenance", "on", "nats-1")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "pod nats-1: maintenance was already requested\npod nats-1 is in maintenance\n", r.stdout)
		assert.Equal(t, "kernel upgrade", a.pod(t, "nats-1").Reason, "an empty reason keeps the stored one")
	})

	t.Run("unsafe second pod is refused", func(t *testing.T) {
		r := cli("maintenance", "on", "nats-2", "--reason", "second")
		require.Equal(t, 1, r.code, r)
		assert.Empty(t, r.stdout)
		assert.Contains(t, r.stderr, "prober: refused: maintenance of pod nats-2 would cost 3 Raft group(s) their quorum")
		assert.Regexp(t, `(?m)^GROUP\s+KIND\s+QUORUM\s+REMAINING\s+LOST$`, r.stderr)
		for _, g := range []string{`_meta_\s+meta`, `demo\s+stream`, `demo/demo-consumer\s+consumer`} {
			assert.Regexp(t, `(?m)^`+g+`\s+2 of 3\s+nats-0\s+nats-1 \(in maintenance\), nats-2 \(requested\)$`, r.stderr)
		}
		assert.Contains(t, r.stderr, "--force --reason")
		assert.NotContains(t, a.config(t).Pods, "nats-2", "a refusal writes nothing")
	})

	t.Run("unsafe dry runs", func(t *testing.T) {
		r := cli("maintenance", "on", "nats-2", "--dry-run")
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stdout, "dry run: maintenance of pod nats-2 is UNSAFE: 3 Raft groups would lose quorum\n")
		assert.Regexp(t, `(?m)^demo\s+stream\s+2 of 3\s+nats-0\s+nats-1 \(in maintenance\), nats-2 \(requested\)$`, r.stdout)

		r = cli("maintenance", "on", "--dc", "dc1", "--dry-run")
		require.Equal(t, 1, r.code, r)
		assert.Contains(t, r.stdout, "dry run: maintenance of dc dc1 is UNSAFE: 3 Raft groups would lose quorum\n")
		assert.Regexp(t, `(?m)^_meta_\s+meta\s+2 of 3\s+-\s+nats-0 \(requested\), nats-1 \(in maintenance\), nats-2 \(requested\)$`, r.stdout)
		assert.Empty(t, a.config(t).DCs)
	})

	t.Run("off follows the phases until caught up", func(t *testing.T) {
		begin := time.Now()
		r := cli("maintenance", "off", "nats-1", "--wait", "60s")
		require.Equal(t, 0, r.code, r)
		t.Logf("maintenance off nats-1 took %.2fs:\n%s", time.Since(begin).Seconds(), r.stdout)
		out := lines(r.stdout)
		assert.Equal(t, "pod nats-1: maintenance entry removed, on the way back", out[0])
		assert.Regexp(t, `^pod nats-1 is back: Active and caught up \(\d+\.\ds\)$`, out[len(out)-1])
		requireInOrder(t, progress(t, r.stdout, "nats-1"), leavingPhases)
		pv := a.pod(t, "nats-1")
		assert.False(t, pv.InMaintenance)
		assert.Equal(t, maintenance.PhaseActive, pv.Phase)
	})

	t.Run("off again is idempotent", func(t *testing.T) {
		r := cli("maintenance", "off", "nats-1")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "pod nats-1: no maintenance entry\npod nats-1 is back: Active and caught up\n", r.stdout)
	})

	t.Run("no wait returns once stored; a short wait times out", func(t *testing.T) {
		a.waitReady(t)
		r := cli("maintenance", "on", "nats-0", "--reason", "quick", "--wait", "0")
		require.Equal(t, 0, r.code, r)
		assert.Regexp(t, `(?m)^pod nats-0 is on its way \(nats-0 Requested\); follow with: prober status$`, r.stdout)
		assert.True(t, a.pod(t, "nats-0").InMaintenance)
		poll(t, 60*time.Second, "nats-0 InMaintenance", func() (bool, string) {
			pv := a.pod(t, "nats-0")
			return pv.Phase == maintenance.PhaseInMaintenance, string(pv.Phase)
		})

		r = cli("maintenance", "off", "nats-0", "--wait", "1ms")
		require.Equal(t, 1, r.code, r)
		assert.Regexp(t, `prober: not there after 1ms: nats-0 (InMaintenance|Unfencing|CatchingUp)\b.*; the request stands and the reconciler goes on`, r.stderr)
		assert.NotContains(t, a.config(t).Pods, "nats-0", "the request stands")

		r = cli("maintenance", "off", "nats-0", "--wait", "60s")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "pod nats-0 is back")
	})
}

// TestCLIErrors checks what the command line says when the API refuses a
// request or cannot be reached; none of them changes anything.
func TestCLIErrors(t *testing.T) {
	a := liveApp(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown pod", []string{"maintenance", "on", "nats-9"}, 1, "prober: pod nats-9 is not a node of the NATS cluster (HTTP 404, not_found)\n"},
		{"unknown dc", []string{"maintenance", "off", "dc9", "--dc"}, 1, "prober: no node of the NATS cluster is in dc dc9 (HTTP 404, not_found)\n"},
		{"bad name", []string{"maintenance", "on", "Nats_1"}, 1, `prober: invalid name "Nats_1": not a DNS-1123 label`},
		{"ttl below a second", []string{"maintenance", "on", "nats-1", "--ttl", "500ms"}, 1, "prober: ttl 500ms: must be at least 1s (HTTP 400, invalid)\n"},
		{"force without reason", []string{"maintenance", "on", "nats-1", "--force"}, 1, "prober: force needs a reason (HTTP 400, invalid)\n"},
		{"dry run of an unknown pod", []string{"maintenance", "on", "nats-9", "--dry-run"}, 1, "not a node of the NATS cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(append(tc.args, "--server", a.base)...)
			assert.Equal(t, tc.code, r.code, r)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, tc.stderr)
		})
	}
	doc := a.config(t)
	assert.Empty(t, doc.Pods)
	assert.Empty(t, doc.DCs)

	t.Run("unreachable server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := srv.URL
		srv.Close() // a port that was just free: nothing listens there now
		for _, cmd := range [][]string{{"status"}, {"raft"}, {"maintenance", "on", "nats-1"}} {
			r := run(append(cmd, "--server", addr)...)
			assert.Equal(t, 1, r.code, r)
			assert.Contains(t, r.stderr, "prober: cannot reach the prober at "+addr, r)
		}
	})
}

// TestCLIDrainAndBalance drains a pod from the command line, brings it
// back without giving its leaderships back, then balances the cluster:
// first a dry run, then for real.
func TestCLIDrainAndBalance(t *testing.T) {
	a := liveApp(t)
	cli := func(args ...string) result { return run(append(args, "--server", a.base)...) }

	r := cli("maintenance", "on", "nats-1", "--mode", "drain", "--reason", "cli drain", "--wait", "60s")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pod nats-1 is in maintenance", r)
	var pv maintenance.PodView
	a.get(t, "/pods/nats-1", &pv)
	assert.Equal(t, maintenance.ModeDrain, pv.Mode)
	assert.Empty(t, pv.Raft.Leads, "a drained pod leads nothing")

	r = cli("maintenance", "off", "nats-1", "--no-restore-leaders", "--wait", "60s")
	require.Equal(t, 0, r.code, r)
	a.get(t, "/pods/nats-1", &pv)
	assert.Empty(t, pv.GivenBack)

	r = cli("balance", "--dc", "dc1", "--dry-run")
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `(?m)^leader skew \d+ -> [01] \(\d+ move\(s\)\)$`, r.stdout)
	r = cli("balance")
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `(?m)^leader skew \d+ -> [01] \(\d+ move\(s\)\)$`, r.stdout)

	r = cli("balance", "--dc", "dc9")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, "no node of the NATS cluster is in dc dc9 (HTTP 404, not_found)")
	r = cli("balance", "--to", "nats-2", "--dry-run")
	require.Equal(t, 0, r.code, r)
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.HasPrefix(line, "  would move") {
			assert.True(t, strings.HasSuffix(line, "-> nats-2"), "only moves to nats-2: %q", line)
		}
	}
	r = cli("balance", "--to", "nats-9")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, "pod nats-9 is not a node of the NATS cluster (HTTP 404, not_found)")
}

// TestCLIUsage checks the command line's own checks, which need no server.
func TestCLIUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // a part of it
		stderr string // a part of it
	}{
		{"help", []string{"help"}, 0, "status       every pod: dc, role and leaderships", ""},
		{"unknown command", []string{"nodes"}, 2, "", `prober: unknown command "nodes"`},
		{"status help", []string{"status", "-h"}, 0, "", "usage: prober status [--server URL] [--token T] [--json]"},
		{"maintenance help", []string{"maintenance", "--help"}, 0, "", "-dry-run"},
		{"status takes no argument", []string{"status", "nats-1"}, 2, "", `prober status: unexpected argument "nats-1"`},
		{"raft takes no argument", []string{"raft", "x"}, 2, "", `prober raft: unexpected argument "x"`},
		{"maintenance without arguments", []string{"maintenance"}, 2, "", "want on or off and a pod"},
		{"maintenance up", []string{"maintenance", "up", "nats-1"}, 2, "", `"up": want on or off`},
		{"maintenance without target", []string{"maintenance", "on"}, 2, "", "maintenance on: which pod (or dc with --dc)?"},
		{"two targets", []string{"maintenance", "on", "nats-1", "nats-2"}, 2, "", "one target at a time, got nats-1 nats-2"},
		{"off with on's flags", []string{"maintenance", "off", "nats-1", "--dry-run", "--reason", "x"}, 2, "", "--dry-run applies to on only\n  --reason applies to on only"},
		{"bad ttl", []string{"maintenance", "on", "nats-1", "--ttl", "soon"}, 2, "", `invalid value "soon" for flag -ttl`},
		{"negative wait", []string{"maintenance", "on", "nats-1", "--wait", "-1s"}, 2, "", "--wait -1s: must not be negative"},
		{"keep without evacuate", []string{"maintenance", "on", "nats-1", "--keep-evacuated"}, 2, "", "--keep-evacuated needs --evacuate"},
		{"bad mode", []string{"maintenance", "on", "nats-1", "--mode", "cut"}, 2, "", `--mode "cut": want fence or drain`},
		{"mode on off", []string{"maintenance", "off", "nats-1", "--mode", "drain"}, 2, "", "--mode applies to on only"},
		{"balance takes no argument", []string{"balance", "dc1"}, 2, "", `prober balance: unexpected argument "dc1"`},
		{"bad server", []string{"status", "--server", "ftp://x"}, 2, "", `--server "ftp://x": want http://host:port`},
		{"unknown flag", []string{"raft", "--colour"}, 2, "", "flag provided but not defined: -colour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(tc.args...)
			assert.Equal(t, tc.code, r.code, r)
			assert.Contains(t, r.stdout, tc.stdout, r)
			assert.Contains(t, r.stderr, tc.stderr, r)
		})
	}
}

// TestCLIHelp checks the first contact: -h, --help and help print the
// table of commands (not the embedded default's flags), and a command's
// -h, or help <command>, its flags.
func TestCLIHelp(t *testing.T) {
	want := run("help")
	require.Equal(t, 0, want.code, want)
	for _, c := range commands {
		assert.Regexp(t, `(?m)^  `+c.name+` +\S`, want.stdout, "the usage lists %s", c.name)
	}
	assert.NotContains(t, want.stdout, "-listen", "no embedded flags in the list of commands")
	for _, arg := range []string{"-h", "--help", "-help"} {
		r := run(arg)
		assert.Equal(t, 0, r.code, r)
		assert.Equal(t, want.stdout, r.stdout, "prober %s prints what prober help prints", arg)
		assert.Empty(t, r.stderr)
	}

	for _, tc := range []struct {
		name         string
		args         []string
		code         int
		out, errOut  string // a part of each
		notInAnyText string
	}{
		{"a command's -h", []string{"status", "-h"}, 0, "", "-json", "embedded     run"},
		{"a command's --help", []string{"rollout", "--help"}, 0, "", "-hold", "embedded     run"},
		{"help of a command on stdout", []string{"help", "maintenance"}, 0, "usage: prober maintenance on|off", "", "embedded     run"},
		{"the embedded default's flags", []string{"embedded", "-h"}, 0, "", "-listen", "embedded     run"},
		{"help of help", []string{"help", "help"}, 0, "embedded     run", "", "-listen"},
		{"help of an unknown command", []string{"help", "nodes"}, 2, "", `prober: unknown command "nodes"`, "-listen"},
		{"help of two commands", []string{"help", "status", "raft"}, 2, "", "prober help: one command at a time, got status raft", "-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(tc.args...)
			assert.Equal(t, tc.code, r.code, r)
			assert.Contains(t, r.stdout, tc.out, r)
			assert.Contains(t, r.stderr, tc.errOut, r)
			assert.NotContains(t, r.stdout+r.stderr, tc.notInAnyText, r)
		})
	}
}

// TestCLIToken checks that the token and the server come from the flags or
// the environment, and that a token goes out as a bearer token.
func TestCLIToken(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"Unauthorized"}}`))
	}))
	defer srv.Close()
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := auth
		auth = nil
		return out
	}

	r := run("status", "--server", srv.URL, "--token", "s3cret")
	assert.Equal(t, 1, r.code, r)
	assert.Equal(t, "prober: Unauthorized (HTTP 401, unauthorized)\n", r.stderr)
	assert.Equal(t, []string{"Bearer s3cret"}, take())

	r = run("raft", "--server", strings.TrimPrefix(srv.URL, "http://"))
	assert.Equal(t, 1, r.code, r)
	assert.Equal(t, []string{""}, take(), "no token, no header; a bare host:port means http")

	t.Setenv("PROBER_SERVER", srv.URL)
	t.Setenv("PROBER_TOKEN", "from-env")
	r = run("maintenance", "on", "nats-1", "--wait", "0")
	assert.Equal(t, 1, r.code, r)
	assert.Equal(t, []string{"Bearer from-env"}, take())

	// Usage text (on -h and on every usage error) never shows the token.
	for _, args := range [][]string{{"status", "-h"}, {"maintenance", "on"}, {"raft", "--bogus"}} {
		r = run(args...)
		assert.NotContains(t, r.stdout+r.stderr, "from-env", "%v", args)
	}
}
