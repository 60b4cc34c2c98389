package filestore

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
)

// FuzzDecodeFile decodes arbitrary bytes as the store's file. It never
// panics; it says what is wrong, or yields the file's counter and a
// document that the store can write back: one that decodes again to the
// same data.
//
// The seeds are in testdata/fuzz/FuzzDecodeFile; `make fuzz` runs it.
func FuzzDecodeFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		file, problem := decodeFile(b)
		if file == nil {
			assert.NotEmpty(t, problem)
			return
		}
		assert.Empty(t, problem)
		require.NotNil(t, file.doc)
		require.NotNil(t, file.Data)
		assert.Equal(t, file.ResourceVersion, file.doc.ResourceVersion)
		data, err := file.doc.Data()
		require.NoError(t, err, "what the store read it can write")
		assert.Len(t, data, len(file.Data))
		again, err := maintenance.DecodeData(data, file.ResourceVersion)
		require.NoError(t, err)
		data2, err := again.Data()
		require.NoError(t, err)
		assert.Equal(t, data, data2)
	})
}
