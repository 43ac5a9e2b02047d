package server

import (
	"io"
	"log/slog"

	"github.com/meshlite/meshlite/istiod-lite/model/modeltest"
)

var newStaticRegistry = modeltest.NewStaticRegistry

// quiet keeps test output to failures; run with -v and change it to see the server's log.
var quiet = Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
