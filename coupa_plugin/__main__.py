from coupa_plugin.host.cli import main

main(prog_name="coupa-iga")
