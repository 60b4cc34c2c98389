package natsraft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// How the prober reads a NATS server's monitoring endpoint: one GET and
// decode, with the body read whole into a buffer of its announced size and
// bounded. The collector, the fences and the link verifier all read
// through it.

// monitorRequestTimeout bounds one request of a fence or of the link
// verifier to a monitoring endpoint.
const monitorRequestTimeout = 5 * time.Second

// errNotFound is the error of a 404: the endpoint (or the account asked
// for) does not exist on that server.
var errNotFound = errors.New("not found")

// getJSON GETs u with client and decodes the answer into into. The body is
// read whole into a buffer of its announced size (see readBody, which also
// bounds it), then decoded: a json.Decoder grows its buffer by doubling,
// which on the /jsz and /raftz of ten thousand groups (5–7 MB each) leaves
// about as much garbage again on every request. A 404 wraps errNotFound.
// The errors do not name the request: the callers do.
func getJSON(ctx context.Context, client *http.Client, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNotFound
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer putBodyBuffer(buf)
	body, err := readInto(buf, resp, maxBody)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	// The decoded document copies what it keeps (strings, numbers), so
	// the buffer is free again once it is decoded.
	return decodeDoc(body, into)
}

// bodyBuffers recycles the buffers of the monitoring documents: a sweep of
// ten thousand groups reads tens of megabytes, which fresh buffers would
// have the runtime zero and collect again at every sweep.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBodyBuffer returns a buffer to the pool, unless it grew past what a
// document of ten thousand groups needs (one read of a bigger body is
// not worth keeping that much memory for).
func putBodyBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxBodyPrealloc {
		return
	}
	buf.Reset()
	bodyBuffers.Put(buf)
}

// decodeDoc decodes a monitoring document's body into into.
func decodeDoc(body []byte, into any) error {
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// monitorURL joins a monitoring base URL, an endpoint path and a query.
func monitorURL(base, path string, q url.Values) string {
	u := strings.TrimSuffix(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// readBody reads a whole response body of at most maxBody bytes, into a
// buffer of the announced size when there is one (up to maxBodyPrealloc;
// a larger body grows the buffer as it comes).
func readBody(resp *http.Response) ([]byte, error) { return readLimited(resp, maxBody) }

// readLimited is readBody with a limit of its own.
func readLimited(resp *http.Response, maxBody int64) ([]byte, error) {
	return readInto(new(bytes.Buffer), resp, maxBody)
}

// readInto reads a whole response body of at most maxBody bytes into buf
// (empty), growing it once to the announced size when there is one (up to
// maxBodyPrealloc; a larger body grows the buffer as it comes). The bytes
// returned are buf's.
func readInto(buf *bytes.Buffer, resp *http.Response, maxBody int64) ([]byte, error) {
	size := int64(bytes.MinRead)
	if resp.ContentLength > maxBody {
		return nil, fmt.Errorf("body of %d bytes is over the limit of %d", resp.ContentLength, maxBody)
	}
	if resp.ContentLength > 0 {
		size = min(resp.ContentLength, maxBodyPrealloc)
	}
	// bytes.Buffer grows (doubling) whenever less than MinRead is free,
	// so room for MinRead past the body keeps the read to one allocation.
	buf.Grow(int(size) + bytes.MinRead)
	// One byte more than the limit tells a body at the limit from a
	// longer one.
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if n > maxBody {
		return nil, fmt.Errorf("body over the limit of %d bytes", maxBody)
	}
	return buf.Bytes(), nil
}

// maxBody bounds a monitoring document: the /jsz of ten thousand groups
// is 5–7 MB; a body past this is not one to decode. maxBodyPrealloc bounds
// the buffer readBody allocates ahead on the word of a Content-Length.
const (
	maxBody         = 64 << 20
	maxBodyPrealloc = 16 << 20
)

// getDoc decodes the answer of GET base+path?q into into; its errors name
// the whole URL, for callers that ask several servers.
func getDoc(ctx context.Context, client *http.Client, base, path string, q url.Values, into any) error {
	if base == "" {
		return errors.New("no monitoring URL configured")
	}
	u := monitorURL(base, path, q)
	if err := getJSON(ctx, client, u, into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
