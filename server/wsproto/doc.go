// Package wsproto is tickrelay's socket-free WebSocket protocol layer: the
// HTTP upgrade (Handshake), a server-side frame decoder (Decoder), frame
// encoding (PutHeader, AppendFrame, AppendClose) and the table of close
// codes (ReasonFor).
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
//	c.Discard(off)
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
