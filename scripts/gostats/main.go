// Command gostats counts, per package directory, production functions
// longer than a limit and exported names: the numbers issue 14's closing
// note compares before and after. Usage: go run ./scripts/gostats [-max 80] [DIR...]
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type pkgStats struct {
	long     []string
	exported int
}

func main() {
	limit := flag.Int("max", 80, "longest function allowed, in lines")
	verbose := flag.Bool("v", false, "list the long functions")
	flag.Parse()
	roots := flag.Args()
	if len(roots) == 0 {
		roots = []string{"."}
	}
	stats := map[string]*pkgStats{}
	fset := token.NewFileSet()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			dir := filepath.Dir(path)
			s := stats[dir]
			if s == nil {
				s = &pkgStats{}
				stats[dir] = s
			}
			count(fset, f, s, *limit)
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	dirs := make([]string, 0, len(stats))
	for d := range stats {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	fmt.Printf("%-32s %6s %8s\n", "package", ">"+fmt.Sprint(*limit), "exported")
	for _, d := range dirs {
		s := stats[d]
		fmt.Printf("%-32s %6d %8d\n", d, len(s.long), s.exported)
		if *verbose {
			for _, l := range s.long {
				fmt.Printf("    %s\n", l)
			}
		}
	}
}

func count(fset *token.FileSet, f *ast.File, s *pkgStats, limit int) {
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Name.IsExported() && (d.Recv == nil || exportedRecv(d.Recv)) {
				s.exported++
			}
			if d.Body == nil {
				continue
			}
			n := fset.Position(d.End()).Line - fset.Position(d.Pos()).Line + 1
			if n > limit {
				s.long = append(s.long, fmt.Sprintf("%s %d", d.Name.Name, n))
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch sp := spec.(type) {
				case *ast.TypeSpec:
					if sp.Name.IsExported() {
						s.exported++
					}
				case *ast.ValueSpec:
					for _, n := range sp.Names {
						if n.IsExported() {
							s.exported++
						}
					}
				}
			}
		}
	}
}

// exportedRecv reports whether a method's receiver type is exported.
func exportedRecv(fl *ast.FieldList) bool {
	t := fl.List[0].Type
	if st, ok := t.(*ast.StarExpr); ok {
		t = st.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}
