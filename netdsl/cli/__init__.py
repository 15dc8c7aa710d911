"""The commands: main.py runs one (and turns every failure into an exit status and a line), parser.py builds the
parser, spec.py, train.py and deploy.py each add a group of subcommands around common.py. Parsing and printing only."""
