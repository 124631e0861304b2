package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/coldharbor/coldharbor/hsm"
)

// Every command checks its flags, arguments and input paths with these
// before it opens a key: a typo must not cost a password, a PIN try or a
// touch of a hardware key.

// checkKeyURIs parses every key URI and checks that the files of file: keys
// exist, so that no key is unlocked before a later one turns out missing.
func checkKeyURIs(uris ...string) error {
	for _, s := range uris {
		u, err := hsm.ParseURI(s)
		if err != nil {
			return usagef("%v", err)
		}
		if u.Scheme == hsm.SchemeFile {
			if err := inputFile("key", u.Path); err != nil {
				return err
			}
		}
	}
	return nil
}

// inputDir checks that path, given as what, is an existing directory.
func inputDir(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return usagef("%s: %s is not a directory", what, path)
	}
	return nil
}

// inputFile checks that path, given as what, is an existing regular file
// (or a device or pipe a user may point at; not a directory).
func inputFile(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fi.IsDir() {
		return usagef("%s: %s is a directory, not a file", what, path)
	}
	return nil
}

// outputDir checks that the directory a new file goes into exists.
func outputDir(what, path string) error {
	return inputDir(what, filepath.Dir(path))
}

// noArgs refuses positional arguments to a command that takes none.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("%s takes no arguments (got %q)", c.Command.FullName(), c.Args().First())
	}
	return nil
}

// repoCommand checks what a command on one repository checks first:
// --output, no positional arguments, and --repo given. It reports whether
// the output is JSON.
func repoCommand(c *cli.Context) (asJSON bool, err error) {
	if asJSON, err = jsonOutput(c); err != nil {
		return false, err
	}
	if err := noArgs(c); err != nil {
		return false, err
	}
	if c.String("repo") == "" {
		return false, usagef("--repo is required")
	}
	return asJSON, nil
}
