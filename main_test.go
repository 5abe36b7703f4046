package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

const testTimeout = 20 * time.Second

// relayProcess is the tickrelay binary running in a child process.
type relayProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	logs  chan map[string]any
	addr  string
	admin string
	exit  chan error
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tickrelay")
	// go test puts its own toolchain's bin first on the PATH of the tests.
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func startRelay(t *testing.T, bin string, args ...string) *relayProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-log-format", "json", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &relayProcess{t: t, cmd: cmd, logs: make(chan map[string]any, 100), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.logs <- line
			}
		}
		close(p.logs)
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	started := p.awaitLog("tickrelay listening")
	p.addr, p.admin = started["addr"].(string), started["admin"].(string)
	return p
}

// awaitLog returns the next log line whose message is msg.
func (p *relayProcess) awaitLog(msg string) map[string]any {
	p.t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case line, ok := <-p.logs:
			require.True(p.t, ok, "the relay exited before logging %q", msg)
			if line["msg"] == msg {
				return line
			}
		case <-deadline:
			p.t.Fatalf("no log line %q", msg)
		}
	}
}

func (p *relayProcess) signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
}

func (p *relayProcess) awaitExitCode() int {
	p.t.Helper()
	go func() {
		for range p.logs { // keep the pipe drained
		}
	}()
	select {
	case err := <-p.exit:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		require.NoError(p.t, err)
		return 0
	case <-time.After(testTimeout):
		p.t.Fatal("the relay did not exit")
		return -1
	}
}

type player struct {
	t    *testing.T
	conn *websocket.Conn
}

func connect(t *testing.T, addr string) *player {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &player{t: t, conn: conn}
}

func (p *player) request(m *pb.ClientMessage) *pb.ServerMessage {
	p.t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(p.t, err)
	require.NoError(p.t, p.conn.WriteMessage(websocket.BinaryMessage, b))
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(testTimeout)))
	for {
		_, data, err := p.conn.ReadMessage()
		require.NoError(p.t, err)
		var resp pb.ServerMessage
		require.NoError(p.t, proto.Unmarshal(data, &resp))
		if resp.GetRequestId() == m.GetRequestId() {
			return &resp
		}
	}
}

func (p *player) join(room string) *pb.ServerMessage {
	return p.request(&pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: room, CreateIfMissing: true}}})
}

// closeCode reads until the server closes and returns the close code.
func (p *player) closeCode() int {
	p.t.Helper()
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(testTimeout)))
	for {
		if _, _, err := p.conn.ReadMessage(); err != nil {
			ce, ok := err.(*websocket.CloseError)
			require.True(p.t, ok, "read error %v", err)
			return ce.Code
		}
	}
}

// upgradeRaw opens a WebSocket connection on a plain TCP socket and
// returns it once the relay has answered 101: a client that will never
// read or answer anything afterwards.
func upgradeRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_, err = io.WriteString(nc, "GET /ws HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(testTimeout)))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return nc
}

// closeCodeOf reads server frames from nc until a Close and returns its code.
func closeCodeOf(t *testing.T, nc net.Conn) int {
	t.Helper()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(testTimeout)))
	br := bufio.NewReader(nc)
	for {
		var h [2]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err, "no Close frame before the connection ended")
		n := int(h[1] & 0x7f)
		if n == 126 {
			var ext [2]byte
			_, err = io.ReadFull(br, ext[:])
			require.NoError(t, err)
			n = int(ext[0])<<8 | int(ext[1])
		}
		require.Less(t, n, 127, "the relay sends no 64-bit lengths to an idle client")
		payload := make([]byte, n)
		_, err = io.ReadFull(br, payload)
		require.NoError(t, err)
		if h[0]&0x0f == 0x8 {
			require.GreaterOrEqual(t, n, 2)
			return int(payload[0])<<8 | int(payload[1])
		}
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: testTimeout}).Get(url)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestBinaryReloadDrainAndSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	cfgPath := filepath.Join(t.TempDir(), "tickrelay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ntick-rate: 20\ndrain-timeout: 30s\n"), 0o600))

	t.Run("sighup reloads a good file and keeps the old config on a bad one", func(t *testing.T) {
		relay := startRelay(t, bin, "-config", cfgPath)
		require.EqualValues(t, 20, connect(t, relay.addr).join("a").GetJoined().GetTickRate())

		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ntick-rate: 40\n"), 0o600))
		relay.signal(syscall.SIGHUP)
		relay.awaitLog("SIGHUP: config reloaded")
		require.EqualValues(t, 40, connect(t, relay.addr).join("b").GetJoined().GetTickRate())

		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ntick-rate: fast\n"), 0o600))
		relay.signal(syscall.SIGHUP)
		rejected := relay.awaitLog("SIGHUP: config rejected, keeping the running one")
		require.Contains(t, rejected["err"], "tick-rate")
		require.EqualValues(t, 40, connect(t, relay.addr).join("c").GetJoined().GetTickRate())

		relay.signal(syscall.SIGINT)
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("sigterm drains until the rooms are empty, then exits 0", func(t *testing.T) {
		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ndrain-timeout: 30s\n"), 0o600))
		relay := startRelay(t, bin, "-config", cfgPath)
		inRoom := connect(t, relay.addr)
		require.NotNil(t, inRoom.join("stay").GetJoined())
		idle := connect(t, relay.addr)
		require.Equal(t, http.StatusOK, httpStatus(t, "http://"+relay.admin+"/readyz"))

		relay.signal(syscall.SIGTERM)
		relay.awaitLog("draining")
		require.Equal(t, http.StatusServiceUnavailable, httpStatus(t, "http://"+relay.admin+"/readyz"))
		require.Equal(t, pb.ErrorCode_ERROR_CODE_DRAINING, idle.join("late").GetError().GetCode())

		require.NoError(t, inRoom.conn.Close()) // the last player leaves
		require.Equal(t, websocket.CloseGoingAway, idle.closeCode())
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("a sigterm as soon as the relay says it is listening drains", func(t *testing.T) {
		// The signal handlers are installed before the "listening" line;
		// one sent right after it must not meet Go's default action (the
		// process dying without a drain). A narrow window, tried a few
		// times.
		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ndrain-timeout: 30s\n"), 0o600))
		for range 3 {
			relay := startRelay(t, bin, "-config", cfgPath)
			relay.signal(syscall.SIGTERM)
			relay.awaitLog("draining")
			require.Equal(t, 0, relay.awaitExitCode())
		}
	})

	t.Run("a second signal closes at once", func(t *testing.T) {
		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\ndrain-timeout: 10m\n"), 0o600))
		relay := startRelay(t, bin, "-config", cfgPath)
		p := connect(t, relay.addr)
		require.NotNil(t, p.join("forever").GetJoined())
		relay.signal(syscall.SIGTERM)
		relay.awaitLog("draining")
		relay.signal(syscall.SIGTERM)
		require.Equal(t, websocket.CloseGoingAway, p.closeCode())
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("a second signal ends a stop waiting for a client that never answers Close", func(t *testing.T) {
		// close-timeout far beyond the test's bound: exiting within it
		// can only be the second signal's doing.
		require.NoError(t, os.WriteFile(cfgPath, []byte("auth: off\nclose-timeout: 10m\n"), 0o600))
		relay := startRelay(t, bin, "-config", cfgPath)
		mute := upgradeRaw(t, relay.addr) // answers nothing
		relay.signal(syscall.SIGTERM)     // no rooms: the drain ends, every connection gets 1001
		relay.awaitLog("draining")
		// The mute client holds its Close unanswered: the relay would now
		// wait close-timeout for it.
		require.Equal(t, websocket.CloseGoingAway, closeCodeOf(t, mute), "the drain's Close")
		select {
		case err := <-relay.exit:
			t.Fatalf("the relay exited (%v) while a client had not answered its Close", err)
		default:
		}
		relay.signal(syscall.SIGTERM)
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("bad flags stop start-up with a message", func(t *testing.T) {
		out, err := exec.Command(bin, "-tick-rate", "5000").CombinedOutput()
		require.Error(t, err)
		require.True(t, strings.Contains(string(out), "tick-rate: 5000 is out of range"), "%s", out)
	})
}

// A connection flood does not stop the relay, even when its open-file limit
// is lowered under it and other parts of the process (here idle admin API
// connections) hold most descriptors: connections are counted against the
// limit as it is now, accept() that runs out is answered with the reserve
// descriptor, held connections keep working, and once the flood is gone
// the relay accepts again.
func TestBinarySurvivesDescriptorExhaustion(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	p := startRelay(t, bin)
	held := connect(t, p.addr)
	require.NotNil(t, held.join("held").GetJoined())
	other := connect(t, p.addr)
	require.NotNil(t, other.join("held").GetJoined())

	limit := unix.Rlimit{Cur: 200, Max: 200}
	require.NoError(t, unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &limit, nil))
	// Idle admin connections take most of what is left.
	var idle []net.Conn
	for range 170 {
		c, err := net.DialTimeout("tcp", p.admin, testTimeout)
		require.NoError(t, err)
		idle = append(idle, c)
	}

	const flood = 300
	var wg sync.WaitGroup
	var answered, refused503 atomic.Int64
	conns := make(chan net.Conn, flood)
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", p.addr, testTimeout)
			if err != nil {
				return // the kernel's accept queue may be full: refused is fine
			}
			conns <- c
			_ = c.SetDeadline(time.Now().Add(testTimeout))
			_, _ = c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
			buf := make([]byte, 12)
			if _, err := io.ReadFull(c, buf); err == nil {
				answered.Add(1)
				if string(buf) == "HTTP/1.1 503" {
					refused503.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(conns)
	for c := range conns {
		_ = c.Close()
	}
	for _, c := range idle {
		_ = c.Close()
	}
	t.Logf("flood of %d: %d answered, %d with 503", flood, answered.Load(), refused503.Load())
	require.Positive(t, refused503.Load(), "the excess is answered 503")

	// Out of descriptors entirely: the limit set to what the relay holds
	// now, so accept() itself fails with EMFILE; the reserve descriptor
	// still lets it answer (and drain the kernel's queue, not spin on it).
	// Wait until the flood's descriptors are all given back, so that the
	// limit leaves none free.
	fds := func() int {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
		require.NoError(t, err)
		return len(entries)
	}
	var settled int
	require.Eventually(t, func() bool {
		n := fds()
		stable := n == settled && n < 60
		settled = n
		return stable
	}, testTimeout, 100*time.Millisecond)
	entries := make([]struct{}, settled)
	limit = unix.Rlimit{Cur: uint64(settled), Max: 200} // the hard limit cannot be raised again
	require.NoError(t, unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &limit, nil))
	for range 20 {
		c, err := net.DialTimeout("tcp", p.addr, testTimeout)
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		buf := make([]byte, 12)
		_, err = io.ReadFull(c, buf)
		require.NoError(t, err, "answered even with no descriptor to spare")
		require.Equal(t, "HTTP/1.1 503", string(buf), "after %d descriptors", len(entries))
		_ = c.Close()
	}
	limit = unix.Rlimit{Cur: 200, Max: 200}
	require.NoError(t, unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &limit, nil))

	// Held connections still work, and after the flood the relay accepts
	// and serves new ones.
	require.NoError(t, held.conn.WriteMessage(websocket.BinaryMessage, mustMarshal(t, &pb.ClientMessage{
		Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("still here")}}})))
	require.NoError(t, other.conn.SetReadDeadline(time.Now().Add(testTimeout)))
	for {
		_, data, err := other.conn.ReadMessage()
		require.NoError(t, err)
		var m pb.ServerMessage
		require.NoError(t, proto.Unmarshal(data, &m))
		if d := m.GetFrame().GetDeliveries(); len(d) > 0 {
			require.Equal(t, "still here", string(d[0].GetPayload()))
			break
		}
	}
	require.Eventually(t, func() bool {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, testTimeout, 50*time.Millisecond, "new connections are accepted after the flood")
	require.Equal(t, http.StatusOK, httpStatus(t, "http://"+p.admin+"/healthz"))
	resp, err := (&http.Client{Timeout: testTimeout}).Get("http://" + p.admin + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Regexp(t, `tickrelay_accept_refused_no_descriptor_total [1-9]`, string(body),
		"accept() ran out of descriptors and the reserve answered (else this test proves nothing)")
}

func mustMarshal(t *testing.T, m *pb.ClientMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}
