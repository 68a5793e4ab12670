from stoic_cli.cli import main

main()
