package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
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
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
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
	require.NoError(t, os.WriteFile(cfgPath, []byte("tick-rate: 20\ndrain-timeout: 30s\n"), 0o600))

	t.Run("sighup reloads a good file and keeps the old config on a bad one", func(t *testing.T) {
		relay := startRelay(t, bin, "-config", cfgPath)
		require.EqualValues(t, 20, connect(t, relay.addr).join("a").GetJoined().GetTickRate())

		require.NoError(t, os.WriteFile(cfgPath, []byte("tick-rate: 40\n"), 0o600))
		relay.signal(syscall.SIGHUP)
		relay.awaitLog("SIGHUP: config reloaded")
		require.EqualValues(t, 40, connect(t, relay.addr).join("b").GetJoined().GetTickRate())

		require.NoError(t, os.WriteFile(cfgPath, []byte("tick-rate: fast\n"), 0o600))
		relay.signal(syscall.SIGHUP)
		rejected := relay.awaitLog("SIGHUP: config rejected, keeping the running one")
		require.Contains(t, rejected["err"], "tick-rate")
		require.EqualValues(t, 40, connect(t, relay.addr).join("c").GetJoined().GetTickRate())

		relay.signal(syscall.SIGINT)
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("sigterm drains until the rooms are empty, then exits 0", func(t *testing.T) {
		require.NoError(t, os.WriteFile(cfgPath, []byte("drain-timeout: 30s\n"), 0o600))
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

	t.Run("a second signal closes at once", func(t *testing.T) {
		require.NoError(t, os.WriteFile(cfgPath, []byte("drain-timeout: 10m\n"), 0o600))
		relay := startRelay(t, bin, "-config", cfgPath)
		p := connect(t, relay.addr)
		require.NotNil(t, p.join("forever").GetJoined())
		relay.signal(syscall.SIGTERM)
		relay.awaitLog("draining")
		relay.signal(syscall.SIGTERM)
		require.Equal(t, websocket.CloseGoingAway, p.closeCode())
		require.Equal(t, 0, relay.awaitExitCode())
	})

	t.Run("bad flags stop start-up with a message", func(t *testing.T) {
		out, err := exec.Command(bin, "-tick-rate", "5000").CombinedOutput()
		require.Error(t, err)
		require.True(t, strings.Contains(string(out), "tick-rate: 5000 is out of range"), "%s", out)
	})
}
