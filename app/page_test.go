package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/prober"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// screenshotsEnv, when set to a folder, makes TestStatusPage write the
// README's screenshots there (make screenshots).
const screenshotsEnv = "PROBER_SCREENSHOTS"

// pageTestTimeout bounds each browser step: a missing element fails the
// test instead of hanging it.
const pageTestTimeout = 20 * time.Second

// livePhaseLimit is how soon the page must show a phase that changed
// through the API.
const livePhaseLimit = 2 * time.Second

// findChromium returns the browser's path. Without it the test skips, saying
// what it did not test, unless it runs as root: then `make deps` should
// have installed it, and its absence is a failure.
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const what = "the status page was NOT tested in a browser (no console errors, live phase from /events, " +
		"dry-run and 409 dialogs, token kept out of URLs)"
	if os.Geteuid() == 0 {
		t.Fatalf("%s is missing (install Debian's chromium: make deps): %s", chromiumPath, what)
	}
	t.Skipf("%s is missing and the test does not run as root to install it: %s", chromiumPath, what)
	return ""
}

// browser is one headless Chromium for a test, with a fresh profile; each
// tab records what the checks need.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := findChromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	begin := time.Now()
	require.NoError(t, chromedp.Do(ctx), "start %s", exe)
	t.Logf("chromium started in %.1fs", time.Since(begin).Seconds())
	return &browser{t: t, ctx: ctx}
}

// tab is one browser tab and what it saw: console errors, uncaught
// exceptions and error log entries (problems), and every request.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
	requests []*network.Request
}

func (b *browser) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	require.NoError(t, chromedp.Listen(ctx, tb.record))
	return tb
}

// record runs in the tab's read loop: it only appends.
func (tb *tab) record(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			tb.problems = append(tb.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		tb.problems = append(tb.problems, "exception: "+(&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			tb.problems = append(tb.problems, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		tb.requests = append(tb.requests, ev.Request)
	}
}

// seen returns the problems, but those that contain one of expected, and
// the requests so far.
func (tb *tab) seen(expected ...string) (problems []string, requests []*network.Request) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, p := range tb.problems {
		if !slices.ContainsFunc(expected, func(e string) bool { return strings.Contains(p, e) }) {
			problems = append(problems, p)
		}
	}
	return problems, slices.Clone(tb.requests)
}

// do runs steps with the test's step timeout.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageTestTimeout)
	defer cancel()
	require.NoError(tb.t, chromedp.Do(ctx, steps...))
}

// waitJS polls the page until expr is truthy, within timeout; it returns
// how long that took.
func (tb *tab) waitJS(what, expr string, timeout time.Duration) time.Duration {
	tb.t.Helper()
	begin := time.Now()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	took := time.Since(begin)
	if err != nil {
		text, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		require.FailNow(tb.t, "page never showed "+what, "after %s: %v\npage text:\n%s", took, err, text)
	}
	return took
}

// eval returns the value of expr in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, pageTestTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(tb.t, err, expr)
	return v
}

// screenshot writes the page as name into the screenshots folder, when one
// is asked for.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, pageTestTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(tb.t, err)
	path := filepath.Join(dir, name)
	require.NoError(tb.t, os.WriteFile(path, png, 0o644))
	tb.t.Logf("wrote %s", path)
}

// podsShown is true once the page shows n pods and its event stream is
// open.
func podsShown(n int) string {
	return fmt.Sprintf(`document.querySelectorAll("#pods tr[data-pod]").length === %d && document.getElementById("conn").dataset.state === "live"`, n)
}

// phaseOf is the phase the page shows for pod.
func phaseOf(pod string) string {
	return fmt.Sprintf(`(document.querySelector("#pod-%s td.phase") || {}).firstChild?.textContent`, pod)
}

// TestStatusPage drives the status page in a real headless Chromium against
// the embedded default: it loads cleanly, follows a change made through the
// API live, shows the unsafe groups of a dry run and of a 409, and asks for
// a token where the API needs one without ever putting it in a URL.
func TestStatusPage(t *testing.T) {
	br := newBrowser(t)
	running := startApp(t, t.TempDir(), nil)

	page := br.tab(t)
	t.Run("loads without console errors", func(t *testing.T) {
		page.t = t
		page.do(chromedp.Navigate(running.base + "/"))
		took := page.waitJS("the pods, the Raft groups and a live stream",
			podsShown(3)+` && document.querySelectorAll("#groups tr[data-group]").length >= 3`, pageTestTimeout)
		t.Logf("page showed the cluster %.2fs after load", took.Seconds())
		assert.Equal(t, "Active", eval[string](page, phaseOf("nats-1")))
		assert.Contains(t, eval[string](page, `document.getElementById("entries").textContent`), "Nothing is in maintenance")
		assert.True(t, eval[bool](page, `document.getElementById("token-form").hidden`), "loopback needs no token")
		problems, _ := page.seen()
		assert.Empty(t, problems, "console errors, exceptions or error log entries")
	})

	t.Run("a phase changed through the API shows within 2s, no reload", func(t *testing.T) {
		page.t = t
		page.waitJS("the pods", podsShown(3), pageTestTimeout)
		page.do(chromedp.Evaluate[chromedp.Void](`window.proberNoReload = true`))
		begin := time.Now()
		running.call(http.MethodPut, "/pods/nats-1", `{"reason":"kernel upgrade"}`, http.StatusAccepted, nil)
		page.waitJS("nats-1 leave Active", phaseOf("nats-1")+` !== "Active"`, livePhaseLimit)
		took := time.Since(begin)
		t.Logf("the page showed nats-1 %s %.3fs after PUT /pods/nats-1 was sent",
			eval[string](page, phaseOf("nats-1")), took.Seconds())
		assert.Less(t, took, livePhaseLimit)
		page.waitJS("nats-1 in maintenance with its entry", phaseOf("nats-1")+` === "InMaintenance" && `+
			`(document.getElementById("entry-pod-nats-1") || {}).textContent?.includes("kernel upgrade")`, 30*time.Second)
		took = page.waitJS("nats-1 out of the Raft groups and a finding about it",
			`[...document.querySelectorAll("#groups tr[data-group]")].every(tr => tr.textContent.includes("nats-1 ✗")) && `+
				`document.querySelector('#findings [data-cause="maintenance"]')?.textContent.includes("nats-1")`, 15*time.Second)
		t.Logf("the Raft groups showed nats-1 out %.2fs after InMaintenance", took.Seconds())
		assert.True(t, eval[bool](page, `window.proberNoReload === true`), "the page was reloaded")
		page.screenshot("status-page.png")
		problems, _ := page.seen()
		assert.Empty(t, problems)
	})

	t.Run("dry run and 409 show the unsafe groups", func(t *testing.T) {
		page.t = t
		// nats-1 is in maintenance: one more of the R3 set costs every group
		// its quorum.
		unsafe := `[...document.querySelectorAll("#dialog[open] #dialog-body li[data-group]")].map(li => li.dataset.group).sort().join(",")`
		page.do(chromedp.Click(chromedp.CSS(`button[data-action="dry"][data-pod="nats-2"]`)))
		page.waitJS("the dry run's unsafe groups", unsafe+` !== ""`, 5*time.Second)
		assert.Equal(t, "_meta_,demo,demo/demo-consumer", eval[string](page, unsafe))
		assert.Contains(t, eval[string](page, `document.getElementById("dialog-title").textContent`), "unsafe")
		assert.True(t, eval[bool](page, `document.getElementById("force-button").hidden`), "a dry run offers no force")
		page.do(chromedp.Click(chromedp.ID("dialog-close")))
		page.waitJS("the dialog closed", `!document.getElementById("dialog").open`, 5*time.Second)

		page.do(chromedp.SendKeys(chromedp.ID("reason"), "disk swap"),
			chromedp.Click(chromedp.CSS(`button[data-action="on"][data-pod="nats-2"]`)))
		page.waitJS("the 409's unsafe groups", unsafe+` !== ""`, 5*time.Second)
		assert.Equal(t, "_meta_,demo,demo/demo-consumer", eval[string](page, unsafe))
		assert.Contains(t, eval[string](page, `document.getElementById("dialog-title").textContent`), "409")
		assert.True(t, eval[bool](page, `!document.getElementById("force-button").hidden && document.getElementById("force-button").disabled`),
			"force waits for a reason")
		page.do(chromedp.SendKeys(chromedp.ID("force-reason"), "datacenter move"))
		assert.False(t, eval[bool](page, `document.getElementById("force-button").disabled`), "a reason enables force")
		page.screenshot("status-page-409.png")
		page.do(chromedp.Click(chromedp.ID("dialog-close")))
		assert.False(t, running.pod("nats-2").InMaintenance, "the refusals wrote nothing")
		// The browser logs the refused PUT; nothing else may show up.
		problems, _ := page.seen("status of 409 (Conflict) (" + running.base + "/pods/nats-2)")
		assert.Empty(t, problems)
	})

	t.Run("asks for a token and keeps it out of URLs", func(t *testing.T) { testPageToken(t, br) })
}

// testPageToken runs the page against an embedded default whose API needs a
// token, loopback included.
func testPageToken(t *testing.T, br *browser) {
	const token = "page-test-token-0123456789abcdef"
	tokens, err := prober.ParseStaticTokens(strings.NewReader(token + ",alice\n"))
	require.NoError(t, err)
	running := startAppWith(t, t.TempDir(), nil, func(e *app.Embedded) {
		e.Auth = prober.AuthOptions{Authenticator: tokens, Authorizer: prober.StaticAuthorizer{}, LoopbackNeedsToken: true}
	})
	code, _, body := running.do(http.MethodGet, "/pods", "")
	require.Equal(t, http.StatusUnauthorized, code, "the API needs a token: %s", body)

	page := br.tab(t)
	page.do(chromedp.Navigate(running.base + "/"))
	page.waitJS("the token form", `!document.getElementById("token-form").hidden && !document.getElementById("auth-note").hidden`, pageTestTimeout)
	assert.Zero(t, eval[int](page, `document.querySelectorAll("#pods tr[data-pod]").length`), "no data without a token")

	page.do(chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)))
	took := page.waitJS("the pods once the token is given", podsShown(3), pageTestTimeout)
	t.Logf("the page showed the cluster %.2fs after the token was given", took.Seconds())
	assert.Equal(t, token, eval[string](page, `sessionStorage.getItem("prober.token")`))
	assert.Zero(t, eval[int](page, `localStorage.length`))
	assert.Empty(t, eval[string](page, `document.getElementById("token").value`), "the field is cleared")

	// A change through the page carries the token too.
	page.do(chromedp.Click(chromedp.CSS(`button[data-action="dry"][data-pod="nats-0"]`)))
	page.waitJS("the dry run's verdict", `document.getElementById("dialog").open && document.getElementById("dialog-title").textContent.includes("safe")`, 5*time.Second)

	_, requests := page.seen()
	authorized := map[string]bool{}
	for _, r := range requests {
		u, err := url.Parse(r.URL)
		require.NoError(t, err)
		for _, form := range []string{token, url.QueryEscape(token), url.PathEscape(token)} {
			assert.NotContains(t, r.URL, form, "the token is in a requested URL")
		}
		if r.URLFragment != "" {
			assert.NotContains(t, r.URLFragment, token)
		}
		if r.Headers["Authorization"] == "Bearer "+token {
			authorized[r.Method+" "+u.Path] = true
		}
	}
	t.Logf("%d requests; sent with the token: %v", len(requests), authorized)
	for _, want := range []string{"GET /pods", "GET /config", "GET /raft", "GET /events", "PUT /pods/nats-0"} {
		assert.True(t, authorized[want], "%s carried the token in its Authorization header", want)
	}
}
