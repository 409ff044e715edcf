//! `dpvsctl`: the ipvsadm-compatible command line client of dpvsd.

use std::io::Write;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dpvsctl: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let mut out = String::new();
    let env = control::ctl::Env::from_process();
    let r = rt.block_on(control::ctl::run_args_env(&argv, &env, &mut out));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    if let Err(e) = r {
        eprintln!("dpvsctl: {e}");
        std::process::exit(e.code);
    }
}
