package maintenance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/natsraft"
)

// FuzzDecodeData decodes two arbitrary stored keys and values, as a
// ConfigMap edited by hand may hold them. Decoding never panics; it either
// refuses the data with an EInvalid naming a key, or yields a document the
// prober can act on and write back whole: its maps allocated, every name
// one the API accepts, every status's phase, entry and evacuated streams
// valid, no entry expiring before it began, and encoding it again gives
// the same keys and a fixed point. The questions the prober asks of a
// document (Desired, Phase, HeldAtBoot, Expire, OutOfService) answer
// without panicking and consistently.
//
// The seeds are in testdata/fuzz/FuzzDecodeData; `make fuzz` runs it.
func FuzzDecodeData(f *testing.F) {
	f.Fuzz(func(t *testing.T, key1, value1, key2, value2 string) {
		data := map[string]string{key1: value1, key2: value2}
		d, err := DecodeData(data, "5")
		if err != nil {
			assert.Nil(t, d)
			require.Equal(t, EInvalid, ErrorCode(err), "%v", err)
			msg := ErrorMessage(err)
			assert.True(t, strings.Contains(msg, fmt.Sprintf("key %q", key1)) || strings.Contains(msg, fmt.Sprintf("key %q", key2)),
				"the error names the key at fault: %s", msg)
			return
		}
		require.NotNil(t, d.Pods)
		require.NotNil(t, d.DCs)
		require.NotNil(t, d.Status)
		assert.Equal(t, "5", d.ResourceVersion)
		assert.Len(t, data, len(d.Pods)+len(d.DCs)+len(d.Status), "one decoded value per key")
		for name, e := range d.Pods {
			assert.NoError(t, ValidName(name))
			assertEntryTimes(t, e)
		}
		for name, e := range d.DCs {
			assert.NoError(t, ValidDCName(name))
			assertEntryTimes(t, e)
		}
		for name, st := range d.Status {
			assert.NotContains(t, []string{"", ".", ".."}, name)
			assert.True(t, st.Phase.valid(), "phase %q", st.Phase)
			assert.Empty(t, entryKeyProblem(st.Entry))
			for _, s := range st.Evacuated {
				_, err := natsraft.ParseStreamRef(s)
				assert.NoError(t, err)
			}
		}

		out, err := d.Data()
		require.NoError(t, err, "a document that decodes is written back whole")
		assert.Len(t, out, len(data))
		again, err := DecodeData(out, "5")
		require.NoError(t, err)
		out2, err := again.Data()
		require.NoError(t, err)
		assert.Equal(t, out, out2, "encoding is a fixed point")

		now := docT0
		pods := []string{"nats-0"}
		for name := range d.Pods {
			pods = append(pods, name)
		}
		for name := range d.Status {
			pods = append(pods, name)
		}
		dcs := []string{""}
		for name := range d.DCs {
			dcs = append(dcs, name)
		}
		for _, pod := range pods {
			for _, dc := range dcs {
				e, source, ok := d.Desired(pod, dc, now)
				assert.Equal(t, ok, source != "")
				assert.False(t, ok && e.Expired(now))
				assert.True(t, d.Phase(pod, dc, now).valid())
				if key, held := d.HeldAtBoot(pod, dc, now); held {
					assert.Empty(t, entryKeyProblem(key))
					assert.NotEmpty(t, key)
				}
			}
		}
		busy := OutOfService(nil, d, now)
		for name := range busy {
			assert.Contains(t, pods, name)
		}
		c := d.Clone()
		c.Expire(now)
		for _, e := range c.Pods {
			assert.False(t, e.Expired(now))
		}
		for _, e := range c.DCs {
			assert.False(t, e.Expired(now))
		}
		_, err = c.Data()
		assert.NoError(t, err)
	})
}

func assertEntryTimes(t *testing.T, e Entry) {
	t.Helper()
	if e.ExpiresAt != nil && !e.Since.IsZero() {
		assert.False(t, e.ExpiresAt.Before(e.Since), "expiresAt %s before since %s", e.ExpiresAt, e.Since)
	}
}
