from participants.cli import main

main()
