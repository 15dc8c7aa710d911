import sys

try:
    from netdsl.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the package is still being imported
    sys.stderr.write("netdsl: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
