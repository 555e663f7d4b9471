from mlops_ci.cli import main

main()
