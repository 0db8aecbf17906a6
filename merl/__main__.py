from merl.cli import main

main()
