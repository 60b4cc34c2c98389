package main

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
	"time"
)

// DefaultServer is the API the command line talks to when neither --server
// nor PROBER_SERVER says otherwise: the embedded default, or a
// port-forward to a sidecar.
const DefaultServer = "http://127.0.0.1:8889"

// requestTimeout bounds one request of the command line; none of them asks
// the server to wait, so they answer quickly.
const requestTimeout = 30 * time.Second

// maxAnswerBytes bounds what the command line reads of an answer.
const maxAnswerBytes = 16 << 20

// client talks to the prober API over HTTP.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// newClient returns a client of the API at server ("http://host:port"; a
// bare "host:port" means http). token, when not empty, is sent as a bearer
// token.
func newClient(server, token string) (*client, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http://host:port or https://host:port", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &client{base: u, token: token, http: &http.Client{Timeout: requestTimeout}}, nil
}

// apiError is an error answer of the API: {"error":{"code","message","details"}}.
type apiError struct {
	Status  int
	Code    string
	Message string
	Details json.RawMessage
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

// errorCode returns the API error code of err, "" when err is not an API
// error.
func errorCode(err error) string {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// call sends method path?query with body (JSON-encoded when not nil),
// decodes a successful answer into out (when not nil) and returns its
// status. An error answer is an *apiError.
func (c *client) call(ctx context.Context, method, path string, query url.Values, body, out any) (int, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "prober-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("cannot reach the prober at %s (is it running? see --server): %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, decodeAPIError(resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// decodeAPIError reads an error answer; one that is not the API's JSON
// (a proxy's page, say) is shown as text.
func decodeAPIError(status int, raw []byte) *apiError {
	var body struct {
		Error struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &body); err == nil && body.Error.Message != "" {
		return &apiError{Status: status, Code: body.Error.Code, Message: body.Error.Message, Details: body.Error.Details}
	}
	text := strings.TrimSpace(string(raw))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text == "" {
		text = http.StatusText(status)
	}
	return &apiError{Status: status, Message: text}
}
