from aitasks.cli import main

main()
