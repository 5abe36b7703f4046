package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Profile is a CPU profile of the relay during one extra run of a scenario
// (not counted in the medians: profiling costs a little CPU itself).
type Profile struct {
	Scenario string       `json:"scenario"`
	System   string       `json:"system"`
	Seconds  int          `json:"seconds"`
	File     string       `json:"file"` // relative to the repository root
	Header   []string     `json:"header"`
	Flat     []ProfileRow `json:"flat"`
	Cum      []ProfileRow `json:"cum"`
	Run      Run          `json:"run"`
	Err      string       `json:"error,omitempty"`
}

// ProfileRow is one line of `go tool pprof -top`.
type ProfileRow struct {
	Flat    string `json:"flat"`
	FlatPct string `json:"flat_pct"`
	SumPct  string `json:"sum_pct"`
	Cum     string `json:"cum"`
	CumPct  string `json:"cum_pct"`
	Name    string `json:"name"`
}

// profileRows is how many rows of the flat pprof view the report keeps;
// profileCumRows of the cumulative one (the table shows the first 20).
const (
	profileRows    = 20
	profileCumRows = 80
)

// runProfile runs sc once more against sys and takes a CPU profile of the
// server from its admin API (/debug/pprof/profile) inside the measured
// window.
func (h *harness) runProfile(ctx context.Context, sc Scenario, sys System) Profile {
	pr := Profile{Scenario: sc.ID, System: sys.Name}
	if sys.Kind != kindRelay || !sys.Admin {
		pr.Err = "profiles need the relay with its admin API on"
		return pr
	}
	l := sc.Load
	pr.Seconds = int(min(time.Duration(h.plan.ProfileSeconds)*time.Second, l.Duration-2*time.Second) / time.Second)
	if pr.Seconds < 1 {
		pr.Err = "measured window too short to profile"
		return pr
	}
	tag := fmt.Sprintf("%s-%s-profile", sc.ID, sys.Name)
	file := filepath.Join(h.outDir, tag+".pprof")
	pr.File, _ = filepath.Rel(h.root, file)
	var perr error
	during := func(ctx context.Context, srv *server) {
		connect := time.Second
		if l.Ramp > 0 {
			connect += time.Duration(float64(l.Clients) / l.Ramp * float64(time.Second))
		}
		sleepCtx(ctx, connect+l.Warmup+time.Second)
		perr = fetchProfile(ctx, "http://"+srv.adminAddr+"/debug/pprof/profile", pr.Seconds, file)
	}
	run := Run{Scenario: sc.ID, System: sys.Name, Start: time.Now()}
	sr, err := h.serveAndSim(ctx, sc, sys, tag, during)
	rep, probe := sr.rep, sr.probe
	run.Report, run.Probe, run.WallS = rep, probe, time.Since(run.Start).Seconds()
	if err != nil {
		run.Err = err.Error()
	}
	pr.Run = run
	if err == nil {
		err = perr
	}
	if err != nil {
		pr.Err = err.Error()
		return pr
	}
	if err := summarizeProfile(ctx, h.root, h.bins.relay, file, &pr); err != nil {
		pr.Err = err.Error()
	}
	return pr
}

// summarizeProfile fills pr's views from `go tool pprof -top` of file.
func summarizeProfile(ctx context.Context, root, bin, file string, pr *Profile) error {
	for _, view := range []struct {
		args []string
		dst  *[]ProfileRow
	}{
		{[]string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", profileRows)}, &pr.Flat},
		// Deeper, so that the share summary finds read(2) and GC too.
		{[]string{"tool", "pprof", "-top", "-cum", fmt.Sprintf("-nodecount=%d", profileCumRows)}, &pr.Cum},
	} {
		out, err := runCapture(ctx, root, "go", append(view.args, bin, file)...)
		if err != nil {
			return err
		}
		header, rows := parsePprofTop(out)
		if pr.Header == nil {
			pr.Header = header
		}
		*view.dst = rows
	}
	return nil
}

// profileShares are the cumulative shares the report sums a profile up
// with: where the relay's CPU goes, by layer.
var profileShares = []struct{ label, fn string }{
	{"write(2)", "golang.org/x/sys/unix.write"},
	{"read(2)", "golang.org/x/sys/unix.read"},
	{"epoll_wait(2)", "golang.org/x/sys/unix.EpollWait"},
	{"room workers (routing, tick build)", "github.com/tickrelay/tickrelay/room.(*worker).run"},
	{"WebSocket decode + dispatch", "github.com/tickrelay/tickrelay/server.(*Server).frames"},
	{"GC (background mark)", "runtime.gcBgMarkWorker"},
	{"allocation", "runtime.mallocgc"},
}

// shareSummary is "write(2) 60.5%, read(2) 7.0%, ..." from the cum view;
// functions below the view's cut-off are left out.
func shareSummary(cum []ProfileRow) string {
	var parts []string
	for _, s := range profileShares {
		for _, r := range cum {
			if r.Name == s.fn {
				parts = append(parts, s.label+" "+r.CumPct)
				break
			}
		}
	}
	return strings.Join(parts, ", ")
}

// fetchProfile GETs a CPU profile of the given length into file.
func fetchProfile(ctx context.Context, url string, seconds int, file string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?seconds=%d", url, seconds), nil)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	// Not httpClient: its timeout is shorter than a profile.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}

// parsePprofTop splits `go tool pprof -top` output into its summary lines
// (Duration, Showing nodes...) and its rows.
func parsePprofTop(out string) (header []string, rows []ProfileRow) {
	inRows := false
	scanLines(out, func(line string) {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
		case !inRows && strings.HasPrefix(t, "flat") && strings.Contains(t, "cum%"):
			inRows = true
		case !inRows:
			if strings.HasPrefix(t, "Duration:") || strings.HasPrefix(t, "Showing nodes") || strings.HasPrefix(t, "Type:") {
				header = append(header, t)
			}
		default:
			f := strings.Fields(t)
			if len(f) < 6 {
				return
			}
			rows = append(rows, ProfileRow{Flat: f[0], FlatPct: f[1], SumPct: f[2], Cum: f[3], CumPct: f[4], Name: strings.Join(f[5:], " ")})
		}
	})
	return header, rows
}
