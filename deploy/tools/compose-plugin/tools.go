//go:build tools

// Package tools pins the Docker Compose CLI plugin (github.com/docker/compose/v5) so that
// deploy/tools/install.sh --with-compose-plugin can build it from the Go module proxy:
// `go install pkg@version` refuses compose because its go.mod has exclude directives, so this
// module requires it (and repeats those excludes) and builds ./cmd from here.
package tools

import _ "github.com/docker/compose/v5/cmd"
