use std::collections::BTreeSet;

use crossbeam_channel::{unbounded, Receiver, TryRecvError};
use proptest::prelude::*;

use super::*;

/// A worker as the dispatcher sees it: its place and its inbox.
struct Worker {
    place: Place,
    inbox: Receiver<Letter<u32>>,
}

impl Worker {
    /// The job handed to it, if any (other letters are not expected here).
    fn handed(&self) -> Option<u32> {
        match self.inbox.try_recv() {
            Ok(Letter::Job(j)) => Some(j),
            Ok(Letter::Own(_)) => panic!("an own job where none was sent"),
            Ok(Letter::Stop) => panic!("a stop where none was sent"),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }
}

/// Seats a worker at a new place (`None`) or in place of the one at `index`.
fn start(d: &Dispatch<u32>, index: Option<usize>) -> (Worker, Next<u32>) {
    let place = d.place_for(index);
    let (tx, rx) = unbounded();
    let first = d.seat(place, tx);
    (Worker { place, inbox: rx }, first)
}

fn pool(d: &Dispatch<u32>, n: usize) -> Vec<Worker> {
    (0..n)
        .map(|_| {
            let (w, first) = start(d, None);
            assert!(matches!(first, Next::Idle), "nothing was queued");
            w
        })
        .collect()
}

/// Two workers, and jobs 1 to `jobs` submitted: jobs 1 and 2 handed to workers 0 and 1
/// (idle longest first), the rest queued.
fn two_busy(d: &Dispatch<u32>, jobs: u32) -> Vec<Worker> {
    let ws = pool(d, 2);
    for j in 1..=jobs {
        d.submit(j).unwrap();
    }
    assert_eq!((ws[0].handed(), ws[1].handed()), (Some(1), Some(2)));
    ws
}

fn run(next: Next<u32>) -> Option<u32> {
    match next {
        Next::Run(j) => Some(j),
        Next::Idle | Next::Leave => None,
    }
}

#[test]
fn a_job_goes_to_the_worker_idle_longest() {
    let d = Dispatch::default();
    let ws = pool(&d, 3);
    d.submit(7).unwrap();
    assert_eq!(ws[0].handed(), Some(7));
    assert_eq!((ws[1].handed(), ws[2].handed()), (None, None));
    // Worker 0 finishes: it joins the line behind workers 1 and 2.
    assert!(matches!(d.next(ws[0].place), Next::Idle));
    d.submit(8).unwrap();
    d.submit(9).unwrap();
    d.submit(10).unwrap();
    assert_eq!((ws[1].handed(), ws[2].handed()), (Some(8), Some(9)));
    assert_eq!(ws[0].handed(), Some(10));
}

#[test]
fn work_queues_while_every_worker_is_busy_and_goes_in_order() {
    let d = Dispatch::default();
    let ws = two_busy(&d, 4);
    assert_eq!(d.queued(), 2);
    assert_eq!(run(d.next(ws[0].place)), Some(3));
    assert_eq!(run(d.next(ws[1].place)), Some(4));
    assert!(matches!(d.next(ws[1].place), Next::Idle));
    assert_eq!(d.queued(), 0);
}

#[test]
fn a_replacement_takes_queued_work_and_the_replaced_worker_leaves() {
    let d = Dispatch::default();
    let ws = pool(&d, 1);
    d.submit(1).unwrap();
    assert_eq!(ws[0].handed(), Some(1));
    d.submit(2).unwrap();
    // Worker 0 hangs in job 1; its replacement takes the waiting job at once.
    let (fresh, first) = start(&d, Some(0));
    assert_eq!(fresh.place.index(), 0);
    assert_eq!(run(first), Some(2));
    // The hung worker comes back: it leaves, and takes nothing.
    d.submit(3).unwrap();
    assert!(matches!(d.next(ws[0].place), Next::Leave));
    assert_eq!(d.queued(), 1);
    assert_eq!(run(d.next(fresh.place)), Some(3));
}

#[test]
fn a_replacement_of_an_idle_seat_is_not_stacked_twice() {
    let d = Dispatch::default();
    let ws = pool(&d, 2);
    let (fresh, first) = start(&d, Some(0));
    assert!(matches!(first, Next::Idle));
    d.submit(1).unwrap();
    d.submit(2).unwrap();
    d.submit(3).unwrap();
    assert_eq!((ws[1].handed(), fresh.handed()), (Some(1), Some(2)));
    assert_eq!(d.queued(), 1, "seat 0 was handed one job, not two");
}

#[test]
fn stopping_refuses_new_jobs_and_lets_busy_workers_drain_the_queue() {
    let d = Dispatch::default();
    let ws = two_busy(&d, 3);
    d.stop();
    assert_eq!(d.submit(4), Err(4));
    assert_eq!(run(d.next(ws[0].place)), Some(3));
    assert!(matches!(d.next(ws[0].place), Next::Leave));
    assert!(matches!(d.next(ws[1].place), Next::Leave));
    // A worker started while stopping is told to leave.
    let (_late, first) = start(&d, None);
    assert!(matches!(first, Next::Leave));
}

#[test]
fn a_worker_whose_thread_is_gone_is_passed_over() {
    let d = Dispatch::default();
    let mut ws = pool(&d, 2);
    // Seat 0's thread is gone (its inbox closed); seat 1's is alive.
    drop(ws.remove(0));
    d.submit(5).unwrap();
    assert_eq!(ws[0].handed(), Some(5));
    // With no live worker idle, the next job waits for one.
    d.submit(6).unwrap();
    assert_eq!(d.queued(), 1);
    let (fresh, first) = start(&d, Some(0));
    assert_eq!(run(first), Some(6));
    assert_eq!(fresh.place.index(), 0);
}

#[test]
fn a_worker_running_its_own_job_is_handed_nothing_until_it_is_done() {
    let d = Dispatch::default();
    let ws = pool(&d, 2);
    // Worker 0, idle longest, runs a job of its own: work goes to worker 1.
    assert!(d.leave_idle(ws[0].place));
    d.submit(1).unwrap();
    assert_eq!((ws[0].handed(), ws[1].handed()), (None, Some(1)));
    d.submit(2).unwrap();
    assert_eq!(d.queued(), 1, "no worker is free");
    // Done, worker 0 takes the queued job rather than going idle.
    assert_eq!(run(d.next(ws[0].place)), Some(2));
    // A worker already handed a job is no longer in the line.
    assert!(matches!(d.next(ws[1].place), Next::Idle));
    d.submit(3).unwrap();
    assert!(!d.leave_idle(ws[1].place));
    assert_eq!(ws[1].handed(), Some(3));
}

/// What a test does next to the dispatcher.
#[derive(Clone, Debug)]
enum Step {
    Submit,
    /// The worker at this index (modulo the pool) finishes what it runs.
    Finish(usize),
    /// The worker at this index is replaced (as after a hang).
    Replace(usize),
    /// The worker at this index, if idle, runs a job of its own meanwhile.
    Own(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Submit),
        4 => (0usize..8).prop_map(Step::Finish),
        1 => (0usize..8).prop_map(Step::Replace),
        1 => (0usize..8).prop_map(Step::Own),
    ]
}

/// The model: what each simulated worker runs.
struct Sim {
    d: Dispatch<u32>,
    workers: Vec<Worker>,
    running: Vec<Option<u32>>,
    /// Workers running a job of their own (out of the idle line).
    own: Vec<bool>,
    started: BTreeSet<u32>,
}

impl Sim {
    fn deliver(&mut self, n: usize, job: u32) {
        assert!(self.running[n].is_none(), "a busy worker got a second job");
        assert!(
            !self.own[n],
            "a worker running its own job was handed another"
        );
        assert!(self.started.insert(job), "job {job} was handed out twice");
        self.running[n] = Some(job);
    }

    fn collect(&mut self) {
        for n in 0..self.workers.len() {
            if let Some(j) = self.workers[n].handed() {
                self.deliver(n, j);
            }
        }
    }

    fn finish(&mut self, n: usize) {
        if std::mem::take(&mut self.own[n]) || self.running[n].take().is_some() {
            if let Some(j) = run(self.d.next(self.workers[n].place)) {
                self.deliver(n, j);
            }
        }
    }
}

proptest! {
    /// Whatever the order of submissions, finishes and replacements, every job reaches
    /// exactly one worker, no worker runs two at once, no job waits while a worker is
    /// idle, and once the workers finish what they run, every job has run.
    #[test]
    fn every_job_runs_once_and_none_waits_beside_an_idle_worker(
        workers in 1usize..6,
        steps in proptest::collection::vec(step(), 0..80),
    ) {
        let d = Dispatch::default();
        let ws = pool(&d, workers);
        let mut sim = Sim {
            d,
            running: vec![None; workers],
            own: vec![false; workers],
            workers: ws,
            started: BTreeSet::new(),
        };
        let mut submitted = 0u32;
        for s in steps {
            match s {
                Step::Submit => {
                    submitted += 1;
                    sim.d.submit(submitted).unwrap();
                }
                Step::Finish(n) => sim.finish(n % workers),
                Step::Own(n) => {
                    let n = n % workers;
                    if sim.running[n].is_none() && !sim.own[n] {
                        // Idle here is in the line: no letter is left unread.
                        prop_assert!(sim.d.leave_idle(sim.workers[n].place));
                        sim.own[n] = true;
                    }
                }
                Step::Replace(n) => {
                    let n = n % workers;
                    let old = sim.workers[n].place;
                    let (fresh, first) = start(&sim.d, Some(n));
                    sim.workers[n] = fresh;
                    sim.running[n] = None;
                    sim.own[n] = false;
                    if let Some(j) = run(first) {
                        sim.deliver(n, j);
                    }
                    prop_assert!(matches!(sim.d.next(old), Next::Leave));
                }
            }
            sim.collect();
            let idle = (0..workers).filter(|&n| sim.running[n].is_none() && !sim.own[n]).count();
            prop_assert!(idle == 0 || sim.d.queued() == 0, "work waits beside an idle worker");
        }
        for _ in 0..=submitted {
            for n in 0..workers {
                sim.finish(n);
            }
            sim.collect();
        }
        prop_assert_eq!(sim.d.queued(), 0);
        prop_assert_eq!(sim.started.len(), usize::try_from(submitted).unwrap());
    }
}
