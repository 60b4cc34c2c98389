// Command podclient is the small static client that the real-node tests run
// in a pod of their own (image kubenode.local/podclient): the caller of the
// prober's API from another pod, and a publisher that keeps writing to a
// JetStream stream while a NATS pod enters and leaves maintenance. The
// image has no shell; tests reach it with `kubectl exec`.
//
//	podclient idle                          block until SIGTERM (the pod's process)
//	podclient http [flags] URL              one HTTP request; prints the status line and the body
//	podclient cat FILE                      print a file (the pod's projected token, for the log check)
//	podclient publish [flags]               publish with acknowledgements until told to stop
//
// Every line publish prints is one JSON object (an event, then a summary).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prober-dev/prober/tools/kubenode/podclient/events"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: podclient idle | http [flags] URL | cat FILE | publish [flags]")
		return 2
	}
	switch args[0] {
	case "idle":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
		return 0
	case "http":
		return doHTTP(args[1:], stdout, stderr)
	case "cat":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: podclient cat FILE")
			return 2
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		_, _ = stdout.Write(b)
		return 0
	case "publish":
		return publish(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "podclient: unknown command %q\n", args[0])
		return 2
	}
}

// doHTTP makes one request and prints "HTTP <code>" and the body. The token
// is read from a file and sent as a bearer token; it is never printed.
func doHTTP(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	method := fs.String("X", http.MethodGet, "method")
	data := fs.String("d", "", "request body")
	tokenFile := fs.String("token-file", "", "file holding a bearer token (the pod's projected ServiceAccount token)")
	timeout := fs.Duration("timeout", 90*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: podclient http [-X METHOD] [-d BODY] [-token-file FILE] URL")
		return 2
	}
	var body io.Reader
	if *data != "" {
		body = strings.NewReader(*data)
	}
	req, err := http.NewRequest(*method, fs.Arg(0), body)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *tokenFile != "" {
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "HTTP %d\n%s\n", resp.StatusCode, bytes.TrimSpace(b))
	return 0
}

// Event is one line publish prints.
type Event = events.Event

// publish sends messages "<id>" with the header Nats-Msg-Id <run>-<id> to the
// subject, waits for each acknowledgement (a failed publish is retried
// with the same id, so a message is stored once), and stops when a message
// arrives on the stop subject, or on SIGTERM. It prints an event when the
// connection moves and when a gap between two acknowledgements is longer
// than -report-gap, and a summary at the end.
func publish(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	servers := fs.String("servers", "", "comma separated NATS URLs; the first is dialed first")
	user := fs.String("user", "", "user")
	passwordFile := fs.String("password-file", "", "file holding the password")
	password := fs.String("password", "", "password (prefer -password-file)")
	subject := fs.String("subject", "", "subject the stream captures")
	stop := fs.String("stop-subject", "", "a message on this subject ends the run")
	rate := fs.Float64("rate", 200, "messages per second at most")
	pubTimeout := fs.Duration("timeout", 2*time.Second, "publish acknowledgement timeout")
	reportGap := fs.Duration("report-gap", 250*time.Millisecond, "print gaps longer than this")
	run := fs.String("run", strconv.FormatInt(time.Now().UnixNano(), 36), "prefix of the message ids (Nats-Msg-Id <run>-<id>): ids of two runs never collide in the stream's duplicate window")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *servers == "" || *subject == "" || *stop == "" {
		fmt.Fprintln(stderr, "publish needs -servers, -subject and -stop-subject")
		return 2
	}
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		*password = strings.TrimSpace(string(b))
	}
	out := &printer{w: stdout}
	seen := map[string]bool{}
	var seenMu sync.Mutex
	nc, err := nats.Connect(*servers,
		nats.UserInfo(*user, *password),
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.Timeout(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			e := Event{Event: "disconnected"}
			if err != nil {
				e.Error = err.Error()
			}
			out.print(e)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			seenMu.Lock()
			seen[c.ConnectedServerName()] = true
			seenMu.Unlock()
			out.print(Event{Event: "reconnected", Server: c.ConnectedServerName()})
		}),
	)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer nc.Close()
	seen[nc.ConnectedServerName()] = true
	out.print(Event{Event: "connected", Server: nc.ConnectedServerName()})
	js, err := nc.JetStream(nats.MaxWait(*pubTimeout))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	done := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(done) }) }
	if _, err := nc.Subscribe(*stop, func(*nats.Msg) { end() }); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := nc.Flush(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sigs:
			end()
		case <-done:
		}
	}()
	out.print(Event{Event: "publishing", Server: nc.ConnectedServerName()})

	interval := time.Duration(float64(time.Second) / *rate)
	var (
		sum     Event
		acked   []int
		lastAck = time.Now()
		maxGap  time.Duration
		next    = time.Now()
	)
publishing:
	for id := 1; ; id++ {
		select {
		case <-done:
			break publishing
		default:
		}
		sum.Published++
		for {
			_, err := js.Publish(*subject, []byte(strconv.Itoa(id)), nats.MsgId(*run+"-"+strconv.Itoa(id)))
			if err == nil {
				break
			}
			sum.Failed++
			// Retry the same id: the stream's duplicate window stores it
			// once even if an earlier attempt was stored but not acked.
			select {
			case <-done:
				break publishing
			case <-time.After(5 * time.Millisecond):
			}
		}
		now := time.Now()
		gap := now.Sub(lastAck)
		maxGap = max(maxGap, gap)
		if gap > *reportGap {
			out.print(Event{Event: "gap", Gap: gap.Seconds(), Server: nc.ConnectedServerName()})
		}
		lastAck = now
		acked = append(acked, id)
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-done:
				break publishing
			case <-time.After(d):
			}
		} else {
			next = now
		}
	}
	sum.Event = "summary"
	sum.Acked = len(acked)
	sum.MaxGap = maxGap.Seconds()
	sum.AckedIDs = events.Ranges(acked)
	seenMu.Lock()
	for s := range seen {
		sum.Servers = append(sum.Servers, s)
	}
	seenMu.Unlock()
	out.print(sum)
	return 0
}

// printer writes events as JSON lines, one at a time.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) print(e Event) {
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(Event{Event: "error", Error: errors.Join(err).Error()})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.w.Write(append(b, '\n'))
}
