from aibridge.cli import main

main()
