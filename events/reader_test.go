package events_test

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
)

func TestEventsReader(t *testing.T) {
	r := events.NewReader(strings.NewReader("retry: 2000\n: stream\nid: 7\n\n\n" +
		"id: 8\nevent: phase\ndata: {\"a\":1}\n\n" +
		": heartbeat\r\n\r\n" +
		"event: dropped\ndata: one\ndata: two\n\n" +
		"id: 9\nevent: cut"))
	var got []events.Frame
	for {
		f, err := r.Next()
		if err != nil {
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a frame cut off by the end")
			break
		}
		got = append(got, f)
	}
	require.Len(t, got, 4)
	assert.Equal(t, events.Frame{ID: "7", HasID: true, Comments: []string{"stream"}, Data: []byte{}}, got[0])
	assert.Equal(t, events.Frame{ID: "8", HasID: true, Type: "phase", Data: []byte(`{"a":1}`)}, got[1])
	assert.Equal(t, []string{"heartbeat"}, got[2].Comments)
	assert.Equal(t, events.Frame{Type: "dropped", Data: []byte("one\ntwo")}, got[3])
	_, err := events.NewReader(strings.NewReader("")).Next()
	assert.ErrorIs(t, err, io.EOF)
}
