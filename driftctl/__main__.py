from driftctl.cli import main

main()
