from editmetrics.cli.app import main

main()
