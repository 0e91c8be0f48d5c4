from saga_worker.cli import main

main()
