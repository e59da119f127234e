from prodemb.synth.cli import main

raise SystemExit(main())
