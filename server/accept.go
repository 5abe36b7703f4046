package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// acceptor accepts TCP connections and hands them to the event loops.
//
// The relay accepts connections itself rather than leaving it to gnet: gnet
// v2.9.7's acceptor stops the whole engine on the first accept() error it does
// not expect, and EMFILE (out of descriptors, under a connection flood) is
// such an error; its main reactor exits and the port refuses everything from
// then on. Here every connection is counted when it is accepted, before any
// descriptor is spent on it beyond the accept itself; over the limit it is
// answered with 503 and closed at once; and one descriptor is kept in reserve
// so that even when the process runs out, the relay can accept a connection,
// answer it and close it, which drains the kernel's accept queue instead of
// spinning on it. One goroutine for all connections.
type acceptor struct {
	srv   *Server
	ln    *net.TCPListener
	spare *os.File // the reserve descriptor; nil while given up
	done  chan struct{}
	// refusedNoFD counts connections refused because the process was out of
	// descriptors (metrics).
	refusedNoFD atomic.Uint64
	// localIP is the local address of the last connection accepted, shared
	// by the connections that have the same one (compactAddrs). Acceptor
	// goroutine only.
	localIP net.IP
}

// compactAddrs trims the two addresses gnet keeps for the connection's
// lifetime (EnrollContext stores nc's LocalAddr and RemoteAddr as they are):
// the net package slices each IP out of the socket address it was decoded
// from, which keeps that 32-byte record alive beside it. The local IP, the
// same for every connection on an address, is shared; the remote one is
// copied out. About 60 bytes of an idle connection's ~2 KiB.
func (a *acceptor) compactAddrs(nc *net.TCPConn) {
	if la, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		if !la.IP.Equal(a.localIP) {
			a.localIP = slices.Clone(la.IP)
		}
		la.IP = a.localIP
	}
	if ra, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if ip4 := ra.IP.To4(); ip4 != nil {
			ra.IP = slices.Clone(ip4)
		} else {
			ra.IP = slices.Clone(ra.IP)
		}
	}
}

func newAcceptor(s *Server, ln *net.TCPListener) *acceptor {
	a := &acceptor{srv: s, ln: ln, done: make(chan struct{})}
	a.reserve()
	return a
}

func (a *acceptor) reserve() {
	if a.spare == nil {
		a.spare, _ = os.Open(os.DevNull)
	}
}

func (a *acceptor) run() {
	defer close(a.done)
	backoff := time.Duration(0)
	for {
		nc, err := a.ln.AcceptTCP()
		if err == nil {
			backoff = 0
			a.srv.admit(nc)
			continue
		}
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
			a.refuseOutOfDescriptors()
		case isTransientAcceptError(err):
			// ENOBUFS, ENOMEM and the like: the kernel is short of
			// something for a moment. Back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			a.srv.log.Warn("accept failed, retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
		default:
			a.srv.fatal(fmt.Errorf("server: accept: %w", err))
			return
		}
	}
}

// refuseOutOfDescriptors uses the reserve descriptor to accept one waiting
// connection and answer it 503, then takes the reserve back. Without it the
// listener stays readable with nothing accepted, and the loop would spin.
func (a *acceptor) refuseOutOfDescriptors() {
	if a.spare != nil {
		_ = a.spare.Close()
		a.spare = nil
	}
	nc, err := a.ln.AcceptTCP()
	if err == nil {
		a.refusedNoFD.Add(1)
		a.srv.stats.handshakeFailed(failServerFull)
		refuseAtAccept(nc)
	}
	a.reserve()
	if a.spare == nil || err != nil {
		// Still nothing to spare (another part of the process holds the
		// descriptors): wait for some to be released.
		time.Sleep(10 * time.Millisecond)
	}
}

func (a *acceptor) close() {
	_ = a.ln.Close()
	<-a.done
	if a.spare != nil {
		_ = a.spare.Close()
	}
}

func isTransientAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refuseAtAccept answers a connection the relay will not serve with HTTP 503
// and closes it, without reading its request: a flood gets its descriptors
// back at once. The answer fits an empty socket buffer, so the write does not
// block; the deadline is a guard.
func refuseAtAccept(nc *net.TCPConn) {
	_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = nc.Write(serverFullAnswer)
	_ = nc.Close()
}

// admission is what the acceptor knows of a connection when it hands it to
// an event loop; OnOpen turns it into a conn.
type admission struct {
	reject bool        // over MaxConnections: refuse it once its request is read
	opened atomic.Bool // OnOpen ran (the loop took the connection)
}

// admit counts a new connection and enrolls it on an event loop, or refuses
// it. Runs on the acceptor goroutine.
func (s *Server) admit(nc *net.TCPConn) {
	s.stats.connsOpened.Add(1)
	s.refreshFileLimit() // one getrlimit: the limit may have been lowered under us
	if !spareDescriptor(nc) {
		// The process is out of descriptors (other parts hold them too):
		// enrolling needs one more for gnet's duplicate, and would cut the
		// connection without an answer. Answer while we still can.
		s.acceptor.refusedNoFD.Add(1)
		s.stats.connsClosed.Add(1)
		s.stats.handshakeFailed(failServerFull)
		refuseAtAccept(nc)
		return
	}
	open := s.openConns.Add(1)
	limit := s.connectionLimit()
	if open > int64(limit+rejectWindow) || s.shuttingDown.Load() {
		// Far past the limit (a flood), or shutting down: answer without
		// waiting for the request.
		s.openConns.Add(-1)
		s.stats.connsClosed.Add(1)
		s.stats.handshakeFailed(failServerFull)
		refuseAtAccept(nc)
		return
	}
	adm := &admission{reject: open > int64(limit)}
	s.acceptor.compactAddrs(nc)
	// EnrollContext duplicates the descriptor into the event loop and
	// closes nc; it returns once the loop has run OnOpen.
	_, err := s.engine.EnrollContext(nc, adm)
	if err != nil || !adm.opened.Load() {
		// The loop never took it (no descriptor for the duplicate, or the
		// engine is stopping): OnClose will not run for it.
		s.openConns.Add(-1)
		s.stats.connsClosed.Add(1)
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			s.acceptor.refusedNoFD.Add(1)
		}
		if err != nil {
			s.log.Debug("enrolling a connection failed", "err", err)
		}
	}
}

// connectionLimit is MaxConnections, lowered when the open-file limit
// (re-read by the sweeper) no longer leaves room for it: an operator may
// lower it under a running process (prlimit), and the count must hold
// whatever the limit is when connections arrive.
func (s *Server) connectionLimit() int {
	return max(min(s.cfg.MaxConnections, int(s.fdLimit.Load())-reservedFiles), 1)
}

// spareDescriptor reports whether the process can still open the
// descriptor that enrolling nc takes (gnet duplicates it), by duplicating it
// once and closing the copy: two cheap syscalls per accepted connection, and
// the only reliable test (descriptor numbers have holes, other parts of the
// process hold some).
func spareDescriptor(nc *net.TCPConn) bool {
	rc, err := nc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		if dup, err := unix.Dup(int(fd)); err == nil {
			_ = unix.Close(dup)
			ok = true
		}
	})
	return ok
}

// refreshFileLimit re-reads the open-file limit (per accept, and by the
// sweeper).
func (s *Server) refreshFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		s.fdLimit.Store(int64(min(lim.Cur, 1<<30)))
	}
}
