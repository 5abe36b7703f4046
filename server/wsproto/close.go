package wsproto

import "github.com/gobwas/ws"

// validCloseCode reports whether code may appear in a Close frame, sent or
// received: 1000-1003, 1007-1014 and 3000-4999 (RFC 6455 section 7.4 and the
// IANA registry). 1004 is reserved, 1005/1006/1015 must never be sent,
// 1016-2999 are unassigned, <1000 and >=5000 are not in use.
//
// Which code the relay sends for which cause is not decided here: see
// package proto/closes.
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
