package server

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/server/wsproto"
)

// A conn is kept for every connection, most of them idle, so its size is
// much of the relay's memory per idle connection (bench S3). What few
// connections need (a parked request, a remote seat, the clocks of a
// close) hangs off pointers and the flags share a word; this pins the size
// class, so that a field added grows it on purpose rather than by accident.
// The same for its frame decoder, a separate object.
func TestConnFitsItsSizeClass(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(conn{}), uintptr(256),
		"conn grew past the 256-byte size class: move what few connections need behind a pointer (connRare), or pack the flags")
	require.LessOrEqual(t, unsafe.Sizeof(wsproto.Decoder{}), uintptr(32),
		"wsproto.Decoder grew past the 32-byte size class")
}
