from diffvq.cli import main

raise SystemExit(main())
