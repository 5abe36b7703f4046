// Package wsproto is tickrelay's socket-free WebSocket protocol layer: the
// HTTP upgrade (Handshake), a server-side frame decoder (Decoder) and frame
// encoding (PutHeader, AppendFrame, AppendClose). Which close code the relay
// sends for what is package proto/closes's table.
//
// What gobwas/ws does here: its Upgrader checks the upgrade request (RFC 6455
// section 4.2.1: method, version, Host, Connection, key) and computes the
// accept key, its CheckHeader applies the frame header rules (mask, RSV bits,
// opcodes, control frame FIN and size, continuation order), and its Cipher
// unmasks. Everything else is this package's own: finding the request in
// buffered bytes, parsing frame headers from partial input, size and
// fragment limits decided on the header, fragment assembly, UTF-8 and Close
// payload checks, and encoding frames into caller-provided headroom.
//
// It works on bytes the caller has already buffered and writes answers to an
// io.Writer, so it fits an event loop (gnet) where nothing may block and no
// goroutine exists per connection. It never reads a socket, never sleeps and
// keeps no timers; timeouts are the caller's.
//
// # Use from a gnet OnTraffic
//
//	buf, _ := c.Peek(-1)                       // valid until Discard
//	off := 0
//	if !st.upgraded {
//		res, err := wsproto.Handshake(buf, c, &cfg)
//		switch {
//		case err != nil || res.CloseAfterWrite:
//			return gnet.Close
//		case res.NeedMore:
//			return gnet.None                    // keep the bytes
//		}
//		st.upgraded, off = true, res.Consumed
//	}
//	for {
//		msg, n, ok, err := st.dec.Next(buf[off:])
//		off += n
//		if err != nil {                         // *wsproto.CloseError
//			return closeWith(c, err)            // AppendClose(code, reason), then close
//		}
//		if !ok {
//			break                               // need more bytes
//		}
//		// handle msg now: msg.Payload may point into buf
//	}
//	if off > 0 {
//		c.Discard(off)                          // gnet: Discard(0) would drop everything
//	}
//
// Every complete frame must be handled before OnTraffic returns, because
// gnet calls it again only when new bytes arrive.
//
// # Borrowed bytes
//
// Message.Payload is valid until the next Decoder.Next or Reset and, when it
// points into the input, only while the caller keeps those bytes. Handshake
// results never point into the input.
package wsproto
