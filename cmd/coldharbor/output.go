package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// outputFlag is --output on every command whose result a script may read.
func outputFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "output",
		Usage: "print the result as `FORMAT`: text (for people) or json (one JSON document on stdout, for scripts)",
		Value: "text",
	}
}

// jsonOutput validates --output and reports whether it asks for JSON.
func jsonOutput(c *cli.Context) (bool, error) {
	switch c.String("output") {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("--output must be text or json, not %q", c.String("output"))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
