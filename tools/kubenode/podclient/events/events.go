// Package events is what podclient's publisher prints, one JSON object a
// line, shared with the tests and the bench that read it.
package events

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Event is one line of the publisher: connected, publishing, reconnected,
// disconnected, gap, then one summary.
type Event struct {
	Event  string  `json:"event"`
	Time   string  `json:"time"`
	Server string  `json:"server,omitempty"`
	Error  string  `json:"error,omitempty"`
	Gap    float64 `json:"gap,omitempty"`
	// The summary: messages published (each acknowledged, but for one cut
	// short by the stop), failed attempts (each retried with the same id),
	// the longest time between two acknowledgements (s) and the servers the
	// publisher was connected to.
	Published int      `json:"published,omitempty"`
	Acked     int      `json:"acked,omitempty"`
	Failed    int      `json:"failed,omitempty"`
	MaxGap    float64  `json:"maxGap,omitempty"`
	Servers   []string `json:"servers,omitempty"`
	// AckedIDs are the ids (1, 2, …) of the acknowledged messages, as
	// ranges "a-b" or single ids.
	AckedIDs []string `json:"ackedIDs,omitempty"`
}

// maxLine bounds one line of the publisher: the summary's AckedIDs grow
// with every gap.
const maxLine = 64 << 20

// Read reads the publisher's lines from r until it ends and hands each
// event to fn; a line that is not an event is skipped. It returns r's
// error, or that of a line longer than 64 MiB.
func Read(r io.Reader, fn func(Event)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), maxLine)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			fn(e)
		}
	}
	return sc.Err()
}

// Ranges writes ascending ids as ranges.
func Ranges(ids []int) []string {
	var out []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if i == j {
			out = append(out, strconv.Itoa(ids[i]))
		} else {
			out = append(out, strconv.Itoa(ids[i])+"-"+strconv.Itoa(ids[j]))
		}
		i = j + 1
	}
	return out
}

// ParseRanges reads what Ranges wrote.
func ParseRanges(rs []string) ([]int, error) {
	var out []int
	for _, r := range rs {
		a, b, isRange := strings.Cut(r, "-")
		lo, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", r, err)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil {
				return nil, fmt.Errorf("range %q: %w", r, err)
			}
		}
		if hi < lo {
			return nil, fmt.Errorf("range %q: descending", r)
		}
		for i := lo; i <= hi; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}
