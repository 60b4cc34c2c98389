package events

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// MaxFrameBytes bounds one frame a Reader accepts.
const MaxFrameBytes = 4 << 20

// Frame is one block of a text/event-stream, up to its blank line: an
// event (Type and Data), an id alone, or comments.
type Frame struct {
	// ID is the id field; HasID tells an empty id from none.
	ID    string
	HasID bool
	// Type is the event field, "" when the frame carries none.
	Type string
	// Data is the data lines joined by newlines.
	Data []byte
	// Comments are the comment lines (": heartbeat"), without the colon.
	Comments []string
}

// Reader reads the frames of a text/event-stream (GET /events, as the
// command line and the tests follow it).
type Reader struct {
	rd *bufio.Reader
}

// NewReader returns a reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{rd: bufio.NewReader(r)}
}

// ErrFrameTooLarge is returned for a frame over MaxFrameBytes.
var ErrFrameTooLarge = errors.New("event stream: frame too large")

// Next returns the next frame; io.EOF once the stream has ended (a frame
// cut off by the end is dropped, as EventSource does).
func (r *Reader) Next() (Frame, error) {
	var f Frame
	var data [][]byte
	seen, size := false, 0
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			if err == io.EOF && line != "" {
				return Frame{}, io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		if size += len(line); size > MaxFrameBytes {
			return Frame{}, ErrFrameTooLarge
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !seen {
				continue
			}
			f.Data = bytes.Join(data, []byte("\n"))
			return f, nil
		}
		seen = true
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			f.Comments = append(f.Comments, value)
		case "id":
			f.ID, f.HasID = value, true
		case "event":
			f.Type = value
		case "data":
			data = append(data, []byte(value))
		}
	}
}
