package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docsWithGoExamples are the documents whose ```go blocks must compile.
var docsWithGoExamples = []string{"README.md", "docs/OPERATIONS.md", "docs/PROTOCOL.md", "docs/ARCHITECTURE.md"}

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// snippetImports are the packages a snippet without its own package clause
// may use by these names; the test imports those it mentions.
var snippetImports = map[string]string{
	"context": "context",
	"errors":  "errors",
	"fmt":     "fmt",
	"time":    "time",
	"client":  "github.com/tickrelay/tickrelay/client",
}

// TestDocsGoExamplesCompile builds every Go code block of the docs: a block
// with a package clause as it is, others (function declarations) in a
// package of their own with the imports they use. A document that shows
// code a reader cannot compile fails here.
func TestDocsGoExamplesCompile(t *testing.T) {
	t.Parallel()
	// Inside the module, so that its packages resolve; "_" keeps it out of ./...
	root, err := os.MkdirTemp(".", "_docexamples")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	var dirs []string
	for _, doc := range docsWithGoExamples {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		for i, m := range goBlock.FindAllSubmatch(b, -1) {
			src := string(m[1])
			if !strings.HasPrefix(strings.TrimSpace(src), "package ") {
				src = wrapSnippet(t, src)
			}
			dir := filepath.Join(root, fmt.Sprintf("%s_%d", strings.NewReplacer("/", "_", ".", "_").Replace(doc), i))
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "example.go"), []byte(src), 0o644))
			dirs = append(dirs, "./"+filepath.ToSlash(dir))
		}
	}
	require.NotEmpty(t, dirs, "the docs hold Go examples")
	out, err := exec.Command("go", append([]string{"vet"}, dirs...)...).CombinedOutput()
	require.NoError(t, err, "a Go example in the docs does not compile or vet:\n%s", out)
}

// wrapSnippet puts src in a package with the imports its code (not its
// comments) refers to.
func wrapSnippet(t *testing.T, src string) string {
	file, err := parser.ParseFile(token.NewFileSet(), "example.go", "package example\n"+src, 0)
	require.NoError(t, err, "a Go example in the docs does not parse:\n%s", src)
	used := map[string]bool{}
	ast.Inspect(file, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && snippetImports[id.Name] != "" {
				used[id.Name] = true
			}
		}
		return true
	})
	var b strings.Builder
	b.WriteString("package example\n\nimport (\n")
	for name := range used {
		fmt.Fprintf(&b, "\t%q\n", snippetImports[name])
	}
	b.WriteString(")\n\n")
	b.WriteString(src)
	return b.String()
}
