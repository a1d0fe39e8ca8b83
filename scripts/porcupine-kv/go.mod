module porcupinebench

go 1.16

require github.com/anishathalye/porcupine v0.0.0

// scripts/bench-porcupine.sh points this at a Porcupine checkout (PORCUPINE_SRC) when it builds.
replace github.com/anishathalye/porcupine => ./porcupine
