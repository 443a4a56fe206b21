from vit_edge.cli import main

main()
