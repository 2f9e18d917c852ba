from deploy.definitions.cli import main

main()
