// dockerfile-check parses a Dockerfile with BuildKit's own front end (the parser and instruction
// decoder `docker build` uses, with its lint rules enabled) and prints what the stages are, as
// JSON, so tests can check the image recipe without a Docker engine.
//
//	dockerfile-check Dockerfile
//
// Exit 0 when the Dockerfile parses without lint warnings; exit 1 with the problems otherwise.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

type stage struct {
	Name    string   `json:"name"`
	Base    string   `json:"base"`
	User    string   `json:"user"`
	Workdir string   `json:"workdir"`
	Cmd     []string `json:"cmd"`
	Entry   []string `json:"entrypoint"`
	Env     []string `json:"env"`
	Copies  []string `json:"copies"`
	Runs    []string `json:"runs"`
	Exposes []string `json:"exposes"`
}

type report struct {
	Args     []string `json:"args"`
	Stages   []stage  `json:"stages"`
	Warnings []string `json:"warnings"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check Dockerfile")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	defer f.Close()
	ast, err := parser.Parse(f)
	if err != nil {
		fail(err)
	}
	out := report{Warnings: []string{}}
	for _, w := range ast.Warnings {
		out.Warnings = append(out.Warnings, fmt.Sprintf("line %d: %s", w.Location.Start.Line, w.Short))
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		out.Warnings = append(out.Warnings, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
	}})
	stages, metaArgs, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		fail(err)
	}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			out.Args = append(out.Args, kv.Key)
		}
	}
	for _, s := range stages {
		st := stage{Name: s.Name, Base: s.BaseName, Cmd: []string{}, Entry: []string{}, Env: []string{},
			Copies: []string{}, Runs: []string{}, Exposes: []string{}}
		for _, cmd := range s.Commands {
			switch c := cmd.(type) {
			case *instructions.UserCommand:
				st.User = c.User
			case *instructions.WorkdirCommand:
				st.Workdir = c.Path
			case *instructions.CmdCommand:
				st.Cmd = c.CmdLine
			case *instructions.EntrypointCommand:
				st.Entry = c.CmdLine
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					st.Env = append(st.Env, kv.Key+"="+kv.Value)
				}
			case *instructions.CopyCommand:
				st.Copies = append(st.Copies, strings.TrimSpace(c.From+" "+strings.Join(c.SourcePaths, " ")+" -> "+c.DestPath))
			case *instructions.RunCommand:
				st.Runs = append(st.Runs, strings.Join(c.CmdLine, " "))
			case *instructions.ExposeCommand:
				st.Exposes = append(st.Exposes, c.Ports...)
			}
		}
		out.Stages = append(out.Stages, st)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	if len(out.Warnings) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(out.Warnings, "\n"))
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
