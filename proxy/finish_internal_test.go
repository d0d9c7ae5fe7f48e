package proxy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneWayOut keeps finish.go the only way out of a session: outside it no
// code moves a session to stClosing or stClosed or closes the viewer conn
// (serveWeb's hand-off to the web server excepted: never a session).
func TestOneWayOut(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "finish.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, lhs := range n.Lhs {
					sel, ok := lhs.(*ast.SelectorExpr)
					if !ok || sel.Sel.Name != "state" || i >= len(n.Rhs) {
						continue
					}
					if id, ok := n.Rhs[i].(*ast.Ident); ok && (id.Name == "stClosing" || id.Name == "stClosed") {
						if name == "web.go" && id.Name == "stClosed" {
							continue // serveWeb: handed to the web server
						}
						t.Errorf("%s: state set to %s outside finish.go", fset.Position(n.Pos()), id.Name)
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Close" {
					return true
				}
				if v, ok := sel.X.(*ast.SelectorExpr); ok && v.Sel.Name == "viewer" {
					t.Errorf("%s: viewer closed outside finish.go", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
	if checked < 10 {
		t.Fatalf("checked %d files: run from the package directory", checked)
	}
}
