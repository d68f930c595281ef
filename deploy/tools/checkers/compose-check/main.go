// compose-check loads a compose file with compose-go, the loader `docker compose config` itself is
// built on: the compose-spec JSON schema, interpolation, YAML merges and extends, and the checks on
// references between services (depends_on, networks, volumes). It is used where the docker CLI
// has no compose plugin (the plain client is not enough for `docker compose config`).
//
//	compose-check [-print] [-env-file FILE] docker-compose.yml [override.yml ...]
//
// Exit 0 when the project is valid (with -print, the normalised project is written as YAML,
// like `docker compose config`); exit 1 with the loader's message otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	print := flag.Bool("print", false, "write the normalised project as YAML")
	envFile := flag.String("env-file", "", "an env file to interpolate from (default: none)")
	name := flag.String("project-name", "", "project name (default: the file's `name:`)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-print] [-env-file FILE] compose.yml [...]")
		os.Exit(2)
	}
	opts := []cli.ProjectOptionsFn{cli.WithOsEnv}
	if *envFile != "" {
		opts = append(opts, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	}
	if *name != "" {
		opts = append(opts, cli.WithName(*name))
	}
	options, err := cli.NewProjectOptions(flag.Args(), opts...)
	if err != nil {
		fail(err)
	}
	project, err := cli.ProjectFromOptions(context.Background(), options)
	if err != nil {
		fail(err)
	}
	if *print {
		out, err := project.MarshalYAML()
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(out)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
